import type { Me } from './api';

/** What main.ts hands each page it renders: who is signed in, where to draw, the route's query. */
export interface Page {
  me: Me;
  view: HTMLElement;
  params: URLSearchParams;
  /** Sets the page's title and heading. */
  heading(title: string): HTMLHeadingElement;
  go(hash: string): void;
  reload(): void;
}
