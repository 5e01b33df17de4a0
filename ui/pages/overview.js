export function overviewPage(ctx) { ctx.main.textContent = 'todo'; }
