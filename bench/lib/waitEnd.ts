/**
 * When a readiness wait ends with its typed error: the moment its span
 * (`Readiness.waitUntilReady`) ends failed. `Dockerd.start` returns that
 * error only after it has stopped what it started (the daemon's containerd,
 * its shims, mounts and files), so the bench times both: the error made,
 * and the start returned.
 */
import * as Effect from "effect/Effect"
import * as Tracer from "effect/Tracer"
import { now } from "./clock.js"

/** Runs `effect` with a tracer that calls `onFailedWait` when a wait's span ends failed. */
export const withWaitEnd = <A, E, R>(
  effect: Effect.Effect<A, E, R>,
  onFailedWait: (at: number) => void
): Effect.Effect<A, E, R> =>
  Effect.flatMap(Effect.tracer, (inner) =>
    Effect.withTracer(
      effect,
      Tracer.make({
        span: (name, parent, context, links, startTime, kind, options) => {
          const span = inner.span(name, parent, context, links, startTime, kind, options)
          if (name !== "Readiness.waitUntilReady") return span
          const end = span.end.bind(span)
          return Object.assign(span, {
            end: (endTime: bigint, exit: Parameters<Tracer.Span["end"]>[1]) => {
              if (exit._tag === "Failure") onFailedWait(now())
              end(endTime, exit)
            }
          })
        },
        context: (f, fiber) => inner.context(f, fiber)
      })
    )
  )
