import { Dialog, showDialog } from '@jupyterlab/apputils';

import { AdaptControls } from './adapt';
import { el } from './dom';
import { Command, CountKey, ICall, IPool, TASK_COUNTS, WORKER_COUNTS, WorkerRun } from './protocol';
import { TimelineView } from './timeline';
import { UsageLines } from './usage';

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

export interface ICardHost {
  send(command: Command): void;
  showError(message: string): void;
}

/**
 * One pool: header, counts, worker bar, resource use, size and mode controls,
 * running call, log and timeline.
 */
export class PoolCard {
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
      this.usage.node,
      this.controls(),
      this.adapt.node,
      this.actions,
      this.log,
      this.timeline.node
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
    this.showWorkers(pool.workers, pool.usage.by_state);
    this.usage.update(pool.usage);
    this.showCall(pool.call);
    this.showLog(pool.log);
    this.showControls();
    this.timeline.poolUpdated();
  }

  showTimeline(svg: string): void {
    this.timeline.show(svg);
  }

  /** A shutdown was answered: show the pool as it is again. */
  answered(): void {
    this.shuttingDown = false;
    this.showControls();
  }

  /** Some command was refused, perhaps a shutdown or a timeline request of this pool's. */
  refused(): void {
    this.timeline.refused();
    this.answered();
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

  /**
   * One segment per state, sized by flex-grow, so 5000 workers cost 5 nodes.
   * Hovering one tells its workers' CPU and memory range (`usage`, by state),
   * updated in place so an open tooltip stays.
   */
  private showWorkers(workers: WorkerRun[], usage: Record<string, string>): void {
    const totals = new Map<string, number>(WORKER_STATES.map(state => [state, 0]));
    for (const [state, count] of workers) {
      totals.set(state, (totals.get(state) ?? 0) + count);
    }
    const present = [...totals].filter(([, count]) => count > 0);
    const key = JSON.stringify(present);
    if (key !== this.workersKey) {
      this.workersKey = key;
      this.showWorkerCounts(present);
    }
    for (const segment of this.bar.querySelectorAll<HTMLElement>('.jp-FiberPanel-segment')) {
      const state = segment.dataset.workerState ?? '';
      const counted = `${totals.get(state)} ${state}`;
      const title = usage[state] ? `${counted} · ${usage[state]}` : counted;
      if (segment.title !== title) {
        segment.title = title;
      }
    }
  }

  private showWorkerCounts(present: [string, number][]): void {
    const summary = present.map(([state, count]) => `${count} ${state}`).join(', ');
    this.bar.setAttribute('aria-label', `Workers: ${summary || 'none'}`);
    this.bar.replaceChildren(
      ...present.map(([state, count]) => {
        const segment = el('span', 'jp-FiberPanel-segment');
        segment.dataset.workerState = state;
        segment.style.flexGrow = String(count);
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
  private readonly usage = new UsageLines();
  private readonly timeline = new TimelineView(this.name, {
    // Drawn at the card's width, the picture's text stays at the size the kernel chose.
    request: () =>
      this.host.send({ cmd: 'timeline', pool: this.name, width: timelineWidth(this.node) })
  });
}

/** The card's inner width in pixels, within what the kernel draws (200 to 4000). */
function timelineWidth(card: HTMLElement): number {
  return Math.min(4000, Math.max(200, Math.floor(card.clientWidth)));
}
