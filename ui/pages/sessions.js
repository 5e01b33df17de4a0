export function sessionsPage(ctx) { ctx.main.textContent = 'todo'; }
