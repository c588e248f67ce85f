/**
 * The warm pool's life cycle in virtual time (`SandboxPool.fromAcquire`
 * over scoped counters in place of sandboxes): an unclaimed item is replaced
 * once it has waited its idle lifetime, a claimed one is removed when its
 * claim ends and never handed out twice, and closing the pool removes all.
 */
import { describe, expect, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as Ref from "effect/Ref"
import * as Scope from "effect/Scope"
import * as TestClock from "effect/TestClock"
import * as SandboxPool from "../src/SandboxPool.js"

/** Items numbered from 0; each records when it is removed. */
const counter = Effect.gen(function* () {
  const made = yield* Ref.make(0)
  const removed = yield* Ref.make<ReadonlyArray<number>>([])
  const acquire = Effect.acquireRelease(
    Ref.getAndUpdate(made, (n) => n + 1),
    (n) => Ref.update(removed, (list) => [...list, n])
  )
  return { acquire, made, removed }
})

describe("SandboxPool.fromAcquire", () => {
  it.scoped("an unclaimed item is replaced after its idle lifetime, not before", () =>
    Effect.gen(function* () {
      const { acquire, made, removed } = yield* counter
      const pool = yield* SandboxPool.fromAcquire(acquire, {
        size: 1,
        idleLifetime: "10 minutes"
      })
      yield* pool.awaitReady
      expect(yield* Ref.get(made)).toBe(1)
      yield* TestClock.adjust("9 minutes")
      expect(yield* Ref.get(removed)).toEqual([])
      yield* TestClock.adjust("2 minutes")
      yield* pool.awaitReady
      expect(yield* Ref.get(removed)).toEqual([0])
      expect(yield* Ref.get(made)).toBe(2)
      const claimed = yield* Effect.scoped(pool.claim)
      expect(claimed).toBe(1)
    })
  )

  it.scoped("a claimed item is removed when its claim ends, and the pool makes another", () =>
    Effect.gen(function* () {
      const { acquire, made, removed } = yield* counter
      const pool = yield* SandboxPool.fromAcquire(acquire, { size: 2, idleLifetime: "1 hour" })
      const claims: Array<number> = []
      for (let i = 0; i < 5; i++) claims.push(yield* Effect.scoped(pool.claim))
      // Never the same item twice.
      expect(new Set(claims).size).toBe(5)
      expect(yield* Ref.get(removed)).toEqual(expect.arrayContaining(claims))
      // The refill runs in the background: let it.
      yield* TestClock.adjust("1 millis")
      expect((yield* Ref.get(made)) - (yield* Ref.get(removed)).length).toBe(2)
    })
  )

  it.effect("closing the pool's scope removes every item, a claimed one once its claim ends", () =>
    Effect.gen(function* () {
      const { acquire, made, removed } = yield* counter
      const poolScope = yield* Scope.make()
      const pool = yield* SandboxPool.fromAcquire(acquire, {
        size: 2,
        idleLifetime: "1 hour"
      }).pipe(Scope.extend(poolScope))
      const claimScope = yield* Scope.make()
      const claimed = yield* pool.claim.pipe(Scope.extend(claimScope))
      const closing = yield* Effect.fork(Scope.close(poolScope, Exit.void))
      yield* TestClock.adjust("1 second")
      // The unclaimed one is gone; the claimed one waits for its claim.
      expect(yield* Ref.get(removed)).not.toContain(claimed)
      yield* Scope.close(claimScope, Exit.void)
      yield* Fiber.join(closing)
      const all = yield* Ref.get(made)
      expect([...(yield* Ref.get(removed))].sort()).toEqual(
        Array.from({ length: all }, (_, n) => n)
      )
    })
  )
})
