/**
 * `npm run demo -- --pool`: the seed's scenario from a warm pool. The same
 * host engine, registry and image as scripts/seedScenario.ts; a
 * `SandboxPool` of one Docker-enabled sandbox made ready ahead of time; a
 * claim (timed), then the same `sandbox.docker.pull` and `run`; the claim
 * ends (the sandbox is removed) and the pool closes (the refilled one too).
 */
import * as Effect from "effect/Effect"
import * as Scope from "effect/Scope"
import * as Exit from "effect/Exit"
import * as Schema from "effect/Schema"
import * as DockerEngine from "../src/DockerEngine.js"
import { pidsMentioning } from "../src/internal/processTree.js"
import * as SandboxPool from "../src/SandboxPool.js"
import { hostEnvironment, SANDBOX_IMAGE, type ScenarioResult } from "./seedScenario.js"

/** One clock for every line this scenario prints. */
const started = Date.now()

/** Runs `effect`, printing `[ elapsed] name (Nms)`. */
const phase =
  (log: (line: string) => void) =>
  <A, E, R>(name: string, effect: Effect.Effect<A, E, R>) =>
    Effect.gen(function* () {
      const t0 = performance.now()
      const result = yield* effect
      const ms = Math.round(performance.now() - t0)
      log(`[${String(Date.now() - started).padStart(6)}ms] ${name} (${ms}ms)`)
      return result
    })

/** Runs the pool scenario; `log` receives a line per phase. */
export const poolScenario = (options: { readonly log: (line: string) => void }) =>
  Effect.gen(function* () {
    const timed = phase(options.log)
    const host = yield* hostEnvironment(options.log)
    const poolScope = yield* Scope.make()
    const pool = yield* SandboxPool.make({
      spec: { image: SANDBOX_IMAGE, runtime: "runc", cpu: 1, network: "host" },
      size: 1,
      engineSocket: host.socket,
      stopGrace: "5 seconds"
    }).pipe(Scope.extend(poolScope))
    yield* timed("pool of 1 filled (sandbox created, Docker ready inside)", pool.awaitReady)
    const claimScope = yield* Scope.make()
    const sandbox = yield* timed(
      "claimed a ready sandbox from the pool",
      pool.claim.pipe(Scope.extend(claimScope))
    )
    yield* timed(
      `sandbox.docker.pull("${host.image}")`,
      Effect.scoped(Effect.flatMap(sandbox.docker.pull(host.image), (pull) => pull.wait))
    )
    const output = yield* timed(
      "sandbox.docker.run (busybox echo)",
      Effect.scoped(
        Effect.flatMap(
          sandbox.docker.run(host.image, ["/bin/busybox", "echo", "hello from a pooled sandbox"], {
            remove: true
          }),
          (container) => container.output
        )
      )
    )
    options.log(`output: ${output.stdout.trim()}`)
    yield* timed("claim ended (sandbox removed)", Scope.close(claimScope, Exit.void))
    yield* timed("pool closed (its other sandbox removed)", Scope.close(poolScope, Exit.void))
    const engine = yield* DockerEngine.make(host.socket)
    const containers = yield* engine.request("GET", "/containers/json?all=true", {
      schema: Schema.Array(Schema.Struct({ Id: Schema.String }))
    })
    return {
      phases: [],
      output: output.stdout,
      dir: host.dir,
      containersAfterRemove: containers.map((container) => container.Id),
      shimsAfterRemove: yield* pidsMentioning(sandbox.id)
    } satisfies ScenarioResult
  })
