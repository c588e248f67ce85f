/**
 * `ProbeSucceeded`, on its own so that the callback runner of probes
 * (internal/runProbe.ts) can build it without importing Probe.ts, which
 * runs probes through that runner. Probe.ts exports it.
 *
 * @internal
 */
import * as Schema from "effect/Schema"

/**
 * One probe that answered.
 */
export class ProbeSucceeded extends Schema.TaggedClass<ProbeSucceeded>()("ProbeSucceeded", {
  probe: Schema.String,
  elapsedMs: Schema.Number,
  value: Schema.Unknown
}) {}
