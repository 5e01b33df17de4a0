export function kvFolderPage(ctx) { ctx.main.textContent = 'todo'; }
export function kvEditPage(ctx) { ctx.main.textContent = 'todo'; }
export function kvCreatePage(ctx) { ctx.main.textContent = 'todo'; }
