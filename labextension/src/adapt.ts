import { el } from './dom';
import { AdaptBounds, IPool } from './protocol';

/** "manual", or "adaptive 1–8": the words the kernel's `%fiber_status` uses. */
export function modeText(adapt: AdaptBounds | null): string {
  return adapt ? `adaptive ${adapt[0]}–${adapt[1]}` : 'manual';
}

export interface IAdaptHost {
  /** Let the pool size itself between the bounds. */
  adapt(min: number, max: number): void;
  /** Stop adapting: keep the target the pool has now, by hand. */
  keepTarget(): void;
  showError(message: string): void;
}

/**
 * A pool's sizing mode, and the controls to switch it: an "adapt" checkbox
 * with the minimum and maximum number of workers.
 *
 * Ticking the box (or changing a bound while it is ticked) sends `adapt`;
 * unticking it keeps the current target by hand. Bounds edited while the
 * pool is manual wait for the box. Pushes write the box and the mode always,
 * a bound only while it is not being edited.
 */
export class AdaptControls {
  readonly node = el('div', 'jp-FiberPanel-adaptRow');

  constructor(
    name: string,
    private readonly host: IAdaptHost
  ) {
    const { checkbox, min, max } = this;
    checkbox.type = 'checkbox';
    checkbox.setAttribute('aria-label', `Adapt the size of pool ${name} to its work`);
    for (const [input, bound] of [
      [min, 'Minimum'],
      [max, 'Maximum']
    ] as const) {
      input.type = 'number';
      input.min = '1';
      input.step = '1';
      input.setAttribute('aria-label', `${bound} workers of pool ${name} while adapting`);
      // 'change' fires once per edit: on Enter, on blur, on a spinner click.
      input.addEventListener('change', () => checkbox.checked && this.apply());
      // A bound left without a change shows the pool's again.
      input.addEventListener('blur', () => this.show());
    }
    checkbox.addEventListener('change', () =>
      checkbox.checked ? this.apply() : this.host.keepTarget()
    );

    const toggle = el('label', 'jp-FiberPanel-adaptToggle');
    toggle.append(checkbox, 'adapt');
    const modeLine = el('div', 'jp-FiberPanel-modeLine', 'size: ');
    modeLine.append(this.mode);
    this.mode.setAttribute('aria-live', 'polite');
    this.node.append(modeLine, toggle, min, el('span', '', '–'), max);
  }

  update(pool: IPool): void {
    if (!this.pool) {
      // Bounds offered before the pool ever adapted: down to one, up to twice its size.
      this.min.value = '1';
      this.max.value = String(Math.max(2, 2 * pool.target));
    }
    this.pool = pool;
    this.show();
  }

  /** Show the pool's mode again, e.g. after the kernel refused a command. */
  show(): void {
    if (!this.pool) {
      return;
    }
    const { adapt, state } = this.pool;
    const { checkbox, min, max } = this;
    this.mode.textContent = modeText(adapt);
    checkbox.checked = adapt !== null;
    checkbox.disabled = min.disabled = max.disabled = state !== 'running';
    if (adapt) {
      for (const [input, bound] of [
        [min, adapt[0]],
        [max, adapt[1]]
      ] as const) {
        if (document.activeElement !== input) {
          input.value = String(bound);
        }
      }
    }
  }

  private apply(): void {
    const bounds = [this.min.value, this.max.value];
    const bad = bounds.find(value => !/^[0-9]+$/.test(value) || Number(value) < 1);
    if (bad !== undefined) {
      this.host.showError(`Adapt bounds must be whole numbers of at least 1, not "${bad}".`);
      this.show();
      return;
    }
    // Whether min <= max is the kernel's to say, in its own words.
    this.host.adapt(Number(bounds[0]), Number(bounds[1]));
  }

  private pool: IPool | null = null;
  private readonly mode = el('span', 'jp-FiberPanel-mode');
  private readonly checkbox = el('input', 'jp-FiberPanel-adapt');
  private readonly min = el('input', 'jp-FiberPanel-adapt-min');
  private readonly max = el('input', 'jp-FiberPanel-adapt-max');
}
