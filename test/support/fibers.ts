/**
 * Which fibers a region of a test forked are still alive: for the claims
 * "interrupted, it leaves no fiber".
 */
import * as Effect from "effect/Effect"
import * as Supervisor from "effect/Supervisor"

/**
 * A supervisor to run a region under (`Effect.supervised`) and, later, the
 * fibers it forked that are still alive (the region's own fiber included).
 */
export const fiberTracker = Effect.map(Supervisor.track, (supervisor) => ({
  supervise: <A, E, R>(region: Effect.Effect<A, E, R>) => Effect.supervised(region, supervisor),
  alive: Effect.map(supervisor.value, (fibers) => fibers.length)
}))
