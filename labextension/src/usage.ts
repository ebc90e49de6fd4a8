import { el } from './dom';
import { IUsage } from './protocol';

/**
 * What a pool's workers use: the sums over those that reported ("cpu 187 % ·
 * memory 412 MiB (8 workers)") and, on a second line, the worker with the
 * most memory. Both sentences come from the kernel, so the panel and the
 * widget in the notebook say the same words; the raw numbers ride along in
 * data attributes ("" while unknown) for scripts and tests.
 */
export class UsageLines {
  readonly node = el('div', 'jp-FiberPanel-usageLines');

  constructor() {
    this.heaviest.hidden = true;
    this.node.append(this.usage, this.heaviest);
  }

  update(usage: IUsage): void {
    setText(this.usage, usage.text);
    this.usage.dataset.usageCpu = raw(usage.cpu_percent);
    this.usage.dataset.usageMemory = raw(usage.memory_bytes);
    const { heaviest } = usage;
    this.heaviest.hidden = heaviest === null;
    this.heaviest.dataset.workerId = heaviest?.worker_id ?? '';
    setText(this.heaviest, heaviest?.text ?? '');
  }

  private readonly usage = el('div', 'jp-FiberPanel-usage');
  private readonly heaviest = el('div', 'jp-FiberPanel-heaviest');
}

function raw(value: number | null): string {
  return value === null ? '' : String(value);
}

/** Only on change: rewriting the same text would drop a selection in it at every push. */
function setText(node: HTMLElement, text: string): void {
  if (node.textContent !== text) {
    node.textContent = text;
  }
}
