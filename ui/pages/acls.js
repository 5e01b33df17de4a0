export function aclListPage(ctx) { ctx.main.textContent = 'todo'; }
export function aclDetailPage(ctx) { ctx.main.textContent = 'todo'; }
export function loginDialog(ctx) { ctx.main.textContent = 'todo'; }
