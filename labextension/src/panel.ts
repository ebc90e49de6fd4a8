import { Widget } from '@lumino/widgets';

import { PoolCard } from './card';
import { IConnectionListener, STATUS, View } from './connection';
import { el } from './dom';
import { Command, IPool, KernelEvent } from './protocol';

export interface IActions {
  send(command: Command): void;
  retry(): void;
}

/** The side panel: an error line, a status sentence and one card per pool. */
export class FiberPanel extends Widget implements IConnectionListener {
  constructor(private readonly actions: IActions) {
    super();
    this.id = 'fiber-panel';
    this.addClass('jp-FiberPanel');

    const dismiss = el('button', 'jp-FiberPanel-dismiss', '×');
    dismiss.setAttribute('aria-label', 'Dismiss error');
    dismiss.addEventListener('click', () => this.showError(null));
    this.error.setAttribute('role', 'alert');
    this.error.append(this.errorText, dismiss);

    this.status.setAttribute('aria-live', 'polite');
    this.retry.addEventListener('click', () => this.actions.retry());
    this.statusRow.append(this.status, this.retry);

    const title = el('h2', 'jp-FiberPanel-title', 'Fiber pools');
    this.node.append(title, this.error, this.statusRow, this.list);
    this.showError(null);
  }

  showView(view: View): void {
    if (view.kind === 'status') {
      // Errors and pools belong to the connection that just went away.
      this.showError(null);
      this.showPools([]);
      this.status.textContent = view.text;
      this.retry.hidden = !view.canRetry;
      this.statusRow.hidden = false;
    } else {
      this.showPools(view.pools);
      this.status.textContent = view.pools.length ? '' : STATUS.noPools;
      this.retry.hidden = true;
      this.statusRow.hidden = view.pools.length > 0;
    }
  }

  showEvent(event: KernelEvent): void {
    if (event.event === 'error') {
      this.showError(event.message);
      // An error does not name its pool, so any shutdown we wait for may have failed,
      // any mode a checkbox shows may have been refused, and so may a timeline request.
      this.cards.forEach(card => card.refused());
    } else if (event.event === 'shutdown') {
      this.cards.get(event.pool)?.answered();
    } else if (event.event === 'timeline') {
      this.cards.get(event.pool)?.showTimeline(event.svg);
    }
  }

  private showError(message: string | null): void {
    this.errorText.textContent = message ?? '';
    this.error.hidden = message === null;
  }

  /** Update cards in place, so a slider being dragged or focused survives a push. */
  private showPools(pools: IPool[]): void {
    const names = new Set(pools.map(pool => pool.name));
    this.cards.forEach((card, name) => {
      if (!names.has(name)) {
        card.node.remove();
        this.cards.delete(name);
      }
    });
    let previous: Node | null = null;
    for (const pool of pools) {
      let card = this.cards.get(pool.name);
      if (!card) {
        card = new PoolCard(pool.name, {
          send: command => this.actions.send(command),
          showError: message => this.showError(message)
        });
        this.cards.set(pool.name, card);
      }
      card.update(pool);
      // Move only nodes out of order: moving a node takes the focus away from it.
      const expected: Node | null = previous ? previous.nextSibling : this.list.firstChild;
      if (card.node !== expected) {
        this.list.insertBefore(card.node, expected);
      }
      previous = card.node;
    }
  }

  private readonly error = el('div', 'jp-FiberPanel-error');
  private readonly errorText = el('span');
  private readonly statusRow = el('div', 'jp-FiberPanel-statusRow');
  private readonly status = el('p', 'jp-FiberPanel-status');
  private readonly retry = el('button', 'jp-FiberPanel-retry jp-mod-styled', 'Retry');
  private readonly list = el('div', 'jp-FiberPanel-pools');
  private readonly cards = new Map<string, PoolCard>();
}
