export function eventsPage(ctx) { ctx.main.textContent = 'todo'; }
