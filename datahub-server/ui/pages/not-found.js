// The page for a path the UI does not know.

import { h, replace } from '../dom.js';

export async function mount(root, ctx) {
  ctx.title('Page not found');
  replace(root,
    h('h1', null, 'Page not found'),
    h('p', null, 'There is no page at ', h('code', null, location.pathname), '. Check the address, or go back to the list.'),
    h('p', null, h('a', { href: '/connections' }, 'Go to connections')));
}
