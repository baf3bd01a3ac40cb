// Placeholder: this page is being built (issue 17). It renders its heading so the router and the nav work.
import { h } from '../dom.js';

export async function render(main) {
  main.append(h('h1', {}, 'Order'), h('p.muted', {}, 'This page is not built yet.'));
}
