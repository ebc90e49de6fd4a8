import { Dialog, showDialog } from '@jupyterlab/apputils';
import { Widget } from '@lumino/widgets';

import { AdaptControls } from './adapt';
import { IConnectionListener, STATUS, View } from './connection';
import { el } from './dom';
import {
  Command,
  CountKey,
  ICall,
  IPool,
  KernelEvent,
  TASK_COUNTS,
  WORKER_COUNTS,
  WorkerRun
} from './protocol';

export interface IActions {
  send(command: Command): void;
  retry(): void;
}

const LOG_LINES = 8;
/** Bar and legend order; states the kernel may add later go last. */
const WORKER_STATES = ['starting', 'idle', 'busy', 'draining', 'stopping'];
const COUNT_LABELS: Record<CountKey, string> = {
  target: 'target',
  live: 'live',
  pending: 'pending',
  busy: 'busy',
  idle: 'idle',
  lost: 'lost',
  tasks_queued: 'queued',
  tasks_running: 'running',
  tasks_done: 'done'
};

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
      // and any mode a checkbox shows may have been refused.
      this.cards.forEach(card => card.answered());
    } else if (event.event === 'shutdown') {
      this.cards.get(event.pool)?.answered();
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

interface ICardHost {
  send(command: Command): void;
  showError(message: string): void;
}

/** One pool: header, counts, worker bar, size and mode controls, running call, log. */
class PoolCard {
  readonly node = el('section', 'jp-FiberPanel-pool');

  constructor(
    private readonly name: string,
    private readonly host: ICardHost
  ) {
    this.node.dataset.pool = name;
    this.node.setAttribute('aria-label', `Pool ${name}`);

    const header = el('div', 'jp-FiberPanel-header');
    header.append(el('h3', 'jp-FiberPanel-name', name), this.backend, this.state);

    this.bar.setAttribute('role', 'img');
    this.legend.setAttribute('aria-hidden', 'true'); // the bar's aria-label says the same

    this.node.append(
      header,
      this.counts('Workers', WORKER_COUNTS),
      this.counts('Tasks', TASK_COUNTS),
      this.bar,
      this.legend,
      this.controls(),
      this.adapt.node,
      this.actions,
      this.log
    );
    this.log.setAttribute('aria-label', `Recent events of pool ${name}`);
    this.call.append(this.callLabel, this.progress, this.callText);
  }

  update(pool: IPool): void {
    this.pool = pool;
    this.node.dataset.state = pool.state;
    this.node.dataset.mode = pool.adapt ? 'adaptive' : 'manual';
    this.backend.textContent = pool.backend;
    this.state.textContent = pool.state;
    this.countNodes.forEach((node, key) => (node.textContent = String(pool[key])));
    this.showWorkers(pool.workers);
    this.showCall(pool.call);
    this.showLog(pool.log);
    this.showControls();
  }

  /** A shutdown was answered, or some command refused: show the pool as it is again. */
  answered(): void {
    this.shuttingDown = false;
    this.showControls();
  }

  private counts(title: string, keys: readonly CountKey[]): HTMLElement {
    const group = el('dl', 'jp-FiberPanel-counts');
    group.setAttribute('aria-label', title);
    for (const key of keys) {
      const cell = el('div');
      const value = el('dd', '', '0');
      value.dataset.count = key;
      this.countNodes.set(key, value);
      cell.append(el('dt', '', COUNT_LABELS[key]), value);
      group.append(cell);
    }
    return group;
  }

  private controls(): HTMLElement {
    const { slider, size, shutdown } = this;
    slider.type = 'range';
    slider.min = '1';
    slider.step = '1';
    slider.setAttribute('aria-label', `Workers of pool ${this.name}`);
    size.type = 'number';
    size.min = '1';
    size.step = '1';
    size.setAttribute('aria-label', `Target size of pool ${this.name}`);
    shutdown.setAttribute('aria-label', `Shut down pool ${this.name}`);

    // Scale once the value is chosen: on release or key press, not while dragging.
    slider.addEventListener('input', () => (size.value = slider.value));
    slider.addEventListener('change', () => this.scale(slider.value));
    slider.addEventListener('pointerdown', () => {
      this.pointerDown = true;
      const release = () => {
        this.pointerDown = false;
        window.removeEventListener('pointerup', release);
        window.removeEventListener('pointercancel', release);
      };
      window.addEventListener('pointerup', release);
      window.addEventListener('pointercancel', release);
    });
    // Enter and blur may both fire for one edit; send it once.
    let edited = false;
    const commit = () => {
      if (edited) {
        edited = false;
        this.scale(size.value);
      }
    };
    size.addEventListener('input', () => (edited = true));
    size.addEventListener('change', commit);
    size.addEventListener('keydown', event => event.key === 'Enter' && commit());
    // Pushes skipped while the user was editing: catch up once they leave.
    for (const input of [slider, size]) {
      input.addEventListener('blur', () => this.showControls());
    }
    shutdown.addEventListener('click', () => void this.confirmShutdown());

    this.actions.append(shutdown);
    const row = el('div', 'jp-FiberPanel-controls');
    row.append(slider, size);
    return row;
  }

  private scale(value: string): void {
    const n = Number(value);
    if (!Number.isInteger(n) || n < 1) {
      this.host.showError(`Pool size must be a whole number of at least 1, not "${value}".`);
      return;
    }
    this.host.send({ cmd: 'scale', pool: this.name, n });
  }

  private async confirmShutdown(): Promise<void> {
    const result = await showDialog({
      title: 'Shut down pool?',
      body: `Pool "${this.name}" will stop all its workers.`,
      buttons: [Dialog.cancelButton(), Dialog.warnButton({ label: 'Shut down' })]
    });
    if (result.button.accept) {
      this.shuttingDown = true;
      this.showControls();
      this.host.send({ cmd: 'shutdown', pool: this.name });
    }
  }

  private showControls(): void {
    if (!this.pool) {
      return;
    }
    this.adapt.update(this.pool);
    const { state, target } = this.pool;
    const { slider, size, shutdown } = this;
    slider.disabled = size.disabled = state !== 'running';
    shutdown.disabled = this.shuttingDown || !(state === 'running' || state === 'broken');
    shutdown.textContent = this.shuttingDown ? 'Shutting down…' : 'Shut down';
    const editing =
      this.pointerDown || document.activeElement === slider || document.activeElement === size;
    if (!editing) {
      slider.max = String(Math.max(64, 2 * target));
      slider.value = size.value = String(target);
    }
  }

  /** One segment per state, sized by flex-grow, so 5000 workers cost 5 nodes. */
  private showWorkers(workers: WorkerRun[]): void {
    const totals = new Map<string, number>(WORKER_STATES.map(state => [state, 0]));
    for (const [state, count] of workers) {
      totals.set(state, (totals.get(state) ?? 0) + count);
    }
    const present = [...totals].filter(([, count]) => count > 0);
    const key = JSON.stringify(present);
    if (key === this.workersKey) {
      return;
    }
    this.workersKey = key;
    const summary = present.map(([state, count]) => `${count} ${state}`).join(', ');
    this.bar.setAttribute('aria-label', `Workers: ${summary || 'none'}`);
    this.bar.replaceChildren(
      ...present.map(([state, count]) => {
        const segment = el('span', 'jp-FiberPanel-segment');
        segment.dataset.workerState = state;
        segment.style.flexGrow = String(count);
        segment.title = `${count} ${state}`;
        return segment;
      })
    );
    this.legend.replaceChildren(
      ...present.map(([state, count]) => {
        const item = el('li');
        item.dataset.legendState = state;
        item.append(el('span', 'jp-FiberPanel-swatch'), `${state} ${count}`);
        return item;
      })
    );
  }

  private showCall(call: ICall | null): void {
    if (!call) {
      this.call.remove();
      return;
    }
    if (!this.call.isConnected) {
      this.node.insertBefore(this.call, this.log);
    }
    this.call.dataset.finished = String(call.finished);
    this.callLabel.textContent = call.label;
    this.progress.setAttribute('aria-label', `Progress of ${call.label}`);
    if (call.total > 0) {
      this.progress.max = call.total;
      this.progress.value = call.done;
    } else {
      this.progress.removeAttribute('value'); // unknown total: indeterminate
    }
    this.callText.textContent = call.failed ? `${call.text}, ${call.failed} failed` : call.text;
  }

  /** Rebuilt only on change, so a selection in the log survives the pushes. */
  private showLog(lines: string[]): void {
    const recent = lines.slice(-LOG_LINES);
    const key = JSON.stringify(recent);
    if (key !== this.logKey) {
      this.logKey = key;
      this.log.replaceChildren(...recent.map(line => el('li', '', line)));
    }
  }

  private pool: IPool | null = null;
  private shuttingDown = false;
  private pointerDown = false;
  private workersKey = '';
  private logKey = '';
  private readonly countNodes = new Map<CountKey, HTMLElement>();
  private readonly backend = el('span', 'jp-FiberPanel-backend');
  private readonly state = el('span', 'jp-FiberPanel-state');
  private readonly bar = el('div', 'jp-FiberPanel-bar');
  private readonly legend = el('ul', 'jp-FiberPanel-legend');
  private readonly slider = el('input', 'jp-FiberPanel-slider');
  private readonly size = el('input', 'jp-FiberPanel-size');
  private readonly shutdown = el('button', 'jp-FiberPanel-shutdown jp-mod-styled jp-mod-warn');
  /** Below the size and mode: what ends the pool. */
  private readonly actions = el('div', 'jp-FiberPanel-controls jp-FiberPanel-actions');
  private readonly adapt = new AdaptControls(this.name, {
    adapt: (min, max) => this.host.send({ cmd: 'adapt', pool: this.name, min, max }),
    keepTarget: () => {
      if (this.pool) {
        this.scale(String(this.pool.target));
      }
    },
    showError: message => this.host.showError(message)
  });
  private readonly call = el('div', 'jp-FiberPanel-call');
  private readonly callLabel = el('div', 'jp-FiberPanel-callLabel');
  private readonly progress = el('progress');
  private readonly callText = el('div', 'jp-FiberPanel-callText');
  private readonly log = el('ul', 'jp-FiberPanel-log');
}
