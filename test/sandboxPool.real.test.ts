/**
 * `SandboxPool` on a real host engine: sandboxes made ready ahead of time
 * (Docker answering, an image pre-pulled), a claim hands one out, its
 * release removes it and the pool refills, and closing the pool removes
 * every sandbox it made.
 */
import { describe, expect, it, layer } from "@effect/vitest"
import * as Context from "effect/Context"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Schema from "effect/Schema"
import * as Scope from "effect/Scope"
import * as Exit from "effect/Exit"
import * as Dockerd from "../src/Dockerd.js"
import * as DockerEngine from "../src/DockerEngine.js"
import * as Sandbox from "../src/Sandbox.js"
import * as SandboxPool from "../src/SandboxPool.js"
import { type HostEnvironment, hostEnvironment, SANDBOX_IMAGE } from "../scripts/seedScenario.js"
import { hasDockerd } from "./support/isolated.js"

const real = hasDockerd()

class Host extends Context.Tag("test/PoolHost")<Host, HostEnvironment>() {}

const HostLive = Layer.scoped(Host, hostEnvironment()).pipe(Layer.provideMerge(Dockerd.layerNode))

const TIMEOUT = Duration.toMillis(Duration.minutes(10))

const Containers = Schema.Array(Schema.Struct({ Id: Schema.String }))

/** The sandbox containers on the host engine (running or not). */
const sandboxesOn = (engine: DockerEngine.DockerEngineClient) =>
  Effect.map(
    engine.request(
      "GET",
      `/containers/json?all=true&filters=${encodeURIComponent(JSON.stringify({ label: [`${Sandbox.SANDBOX_LABEL}=sandbox`] }))}`,
      { schema: Containers }
    ),
    (list) => list.map((container) => container.Id)
  )

describe("SandboxPool settings", () => {
  it.scoped.each([
    [{ size: 0 }, "a pool holds 1 to 64 sandboxes"],
    [{ size: 65 }, "a pool holds 1 to 64 sandboxes"],
    [{ size: 1, images: ["--all-tags"] }, "images.0: is not an image reference"],
    [{ size: 1, idleLifetime: "-1 seconds" }, "idleLifetime"]
  ] as const)("%j is InvalidConfig (field pool) before any sandbox is made: %s", ([fields, says]) =>
    Effect.gen(function* () {
      const error = yield* Effect.flip(
        SandboxPool.make({
          spec: { image: SANDBOX_IMAGE },
          engineSocket: "/nonexistent/engine.sock",
          ...fields
        })
      )
      expect(error).toMatchObject({ _tag: "InvalidConfig", field: "pool" })
      expect(error.message).toContain(says)
    })
  )
})

describe.skipIf(!real)("SandboxPool on a real host engine", () => {
  layer(HostLive, { timeout: TIMEOUT, excludeTestServices: true })((it) => {
    it.scoped(
      "claim hands out a ready sandbox with the image pulled; its release removes it, the pool refills with another; closing the pool removes all",
      () =>
        Effect.gen(function* () {
          const host = yield* Host
          const engine = yield* DockerEngine.make(host.socket)
          const poolScope = yield* Scope.make()
          const pool = yield* SandboxPool.make({
            spec: { image: SANDBOX_IMAGE, network: "host" },
            size: 1,
            images: [host.image],
            engineSocket: host.socket,
            stopGrace: "3 seconds"
          }).pipe(Scope.extend(poolScope))
          yield* pool.awaitReady

          const first = yield* Effect.scoped(
            Effect.gen(function* () {
              const sandbox = yield* pool.claim
              // Ready when handed out: Docker answers and the image is there.
              const inner = yield* DockerEngine.make(sandbox.dockerSocket ?? "")
              yield* inner.ping
              yield* inner.request("GET", `/images/${encodeURIComponent(host.image)}/json`)
              expect(sandbox.spec.dockerEnabled).toBe(true)
              expect(yield* sandboxesOn(engine)).toContain(sandbox.id)
              return sandbox.id
            })
          )
          // Released: removed, never handed out again.
          expect(yield* sandboxesOn(engine)).not.toContain(first)

          yield* pool.awaitReady
          const second = yield* Effect.scoped(Effect.map(pool.claim, (sandbox) => sandbox.id))
          expect(second).not.toBe(first)

          yield* pool.awaitReady
          const waiting = yield* sandboxesOn(engine)
          expect(waiting.length).toBe(1)
          expect(waiting).not.toContain(second)

          yield* Scope.close(poolScope, Exit.void)
          expect(yield* sandboxesOn(engine)).toEqual([])
        }),
      TIMEOUT
    )

    it.scoped(
      "a sandbox that cannot become ready (no dockerd in the image): the claim fails with its typed error; nothing is left",
      () =>
        Effect.gen(function* () {
          const host = yield* Host
          const engine = yield* DockerEngine.make(host.socket)
          const error = yield* Effect.scoped(
            Effect.gen(function* () {
              const pool = yield* SandboxPool.make({
                spec: { image: "sandbox-docker/busybox:latest", network: "host" },
                size: 1,
                engineSocket: host.socket,
                stopGrace: "1 second"
              })
              return yield* Effect.flip(Effect.scoped(pool.claim))
            })
          )
          expect(error._tag).toBe("DockerNotInstalled")
          expect(yield* sandboxesOn(engine)).toEqual([])
        }),
      TIMEOUT
    )
  })
})
