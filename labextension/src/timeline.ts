import { el } from './dom';

/**
 * The least time between two requests of an open timeline. Pushes come at
 * least every second while the pool changes, and each may ask again; drawing
 * and sending thousands of batches costs the kernel far more than a push, so
 * the picture may lag the counts by a push or two.
 */
const REFRESH_MS = 2000;
const SVG_URL = 'data:image/svg+xml;charset=utf-8,';

export interface ITimelineHost {
  /** Ask the kernel for the picture; it answers with a 'timeline' event. */
  request(): void;
}

/**
 * A "Timeline" toggle and, while it is open, the kernel's picture of the
 * pool's recent batches per worker.
 *
 * Opening asks for the picture. After that, each push of the pool asks again
 * once the last answer is in and REFRESH_MS have passed, so an open timeline
 * follows the pool with no timer of its own; closing stops the requests. The
 * SVG is shown as an <img> (a data: URL): an image never runs script, whatever
 * the kernel's markup holds.
 */
export class TimelineView {
  readonly node = el('div', 'jp-FiberPanel-timelineBox');

  constructor(
    name: string,
    private readonly host: ITimelineHost
  ) {
    const { toggle, image } = this;
    toggle.setAttribute('aria-expanded', 'false');
    toggle.setAttribute('aria-label', `Timeline of pool ${name}`);
    toggle.addEventListener('click', () => this.setOpen(!this.open));
    image.alt = `Timeline of pool ${name}`;
    image.hidden = true;
    this.node.append(toggle, image);
  }

  /** The pool was pushed: refresh if open, answered, and not asked too recently. */
  poolUpdated(): void {
    if (this.open && !this.waiting && performance.now() - this.requestedAt >= REFRESH_MS) {
      this.request();
    }
  }

  show(svg: string): void {
    this.waiting = false;
    // An answer may arrive after the timeline was closed.
    if (this.open) {
      this.image.src = SVG_URL + encodeURIComponent(svg);
      this.image.hidden = false;
    }
  }

  /**
   * The kernel refused a command. Errors name no command, but while ours waits
   * it is the likely one: close, so a kernel that cannot draw the timeline is
   * not asked again every REFRESH_MS. Opening it asks once more.
   */
  refused(): void {
    if (this.waiting) {
      this.waiting = false;
      this.setOpen(false);
    }
  }

  private setOpen(open: boolean): void {
    this.open = open;
    this.toggle.setAttribute('aria-expanded', String(open));
    if (open) {
      this.request();
    } else {
      // Opened again later, it would show an old picture until the new one came.
      this.image.hidden = true;
      this.image.removeAttribute('src');
    }
  }

  private request(): void {
    this.waiting = true;
    this.requestedAt = performance.now();
    this.host.request();
  }

  private open = false;
  /** A request is out and its answer not in yet. */
  private waiting = false;
  private requestedAt = 0;
  private readonly toggle = el('button', 'jp-FiberPanel-timelineToggle', 'Timeline');
  private readonly image = el('img', 'jp-FiberPanel-timeline');
}
