import { Counter, Gauge, Registry } from 'prom-client';

/**
 * Prometheus metrics, one registry per context (tests run several in one process). Counters
 * count what this instance did; gauges that describe the archive as a whole are read from the
 * database at scrape time, so every instance reports the same truth.
 */
export class Metrics {
  readonly registry = new Registry();

  readonly integrityChecks = new Counter({
    name: 'evidence_integrity_checks_total',
    help: 'Integrity verifications run by this instance, by result (ok, mismatch, missing, size_mismatch)',
    labelNames: ['result'] as const,
    registers: [this.registry],
  });

  /** Registers a gauge whose value(s) come from `read` at every scrape. */
  gauge<L extends string>(
    name: string,
    help: string,
    labelNames: readonly L[],
    read: (set: (value: number, labels?: Partial<Record<L, string>>) => void) => Promise<void>,
  ): void {
    new Gauge({
      name,
      help,
      labelNames,
      registers: [this.registry],
      async collect() {
        this.reset();
        await read((value, labels) => (labels ? this.set(labels, value) : this.set(value)));
      },
    });
  }

  async render(): Promise<{ contentType: string; body: string }> {
    return { contentType: this.registry.contentType, body: await this.registry.metrics() };
  }
}
