/**
 * Section 7: the first docker command in a sandbox, beside its limits.
 *
 * One host engine of the bench's own (its own directory and network
 * namespace, the images imported, a local registry with a one-layer image
 * pushed: scripts/seedScenario.ts's host side) serves every run. Each round,
 * in a random order:
 *
 * - a Docker-enabled sandbox per way of reaching Docker inside (runc
 *   `host-socket`: the inner socket in a bind-mounted directory of this
 *   machine; runc `exec`: `docker` commands through the Engine's exec API;
 *   `runsc-host-socket`: gVisor, its socket made inside a host socket by
 *   runsc's `--host-uds=create`; `runsc-exec`: gVisor, by exec), timed
 *   from the call: `Sandbox.create` returned, Docker ready inside, the first
 *   `sandbox.docker.pull` of the registry's image done, the first `run` done;
 * - the limits, measured the same way: the host engine's create + start of
 *   the same image with a no-op command; a dockerd started directly on this
 *   machine in a fresh directory (same flags as inside, in the engine's
 *   network namespace) to its first `/_ping` (the oracle, polling every
 *   2 ms); then that fresh dockerd's own pull of the same image from the same
 *   registry, over its Engine API;
 * - with `pool` on, a claim from a `SandboxPool` of one (made ready ahead):
 *   the claim to a `/_ping` answered by Docker inside.
 */
import * as Effect from "effect/Effect"
import * as Schema from "effect/Schema"
import * as Dockerd from "../../src/Dockerd.js"
import * as DockerEngine from "../../src/DockerEngine.js"
import * as ReadinessPolicy from "../../src/ReadinessPolicy.js"
import * as Sandbox from "../../src/Sandbox.js"
import * as SandboxPool from "../../src/SandboxPool.js"
import { isolatedConfig } from "../../test/support/isolated.js"
import { hostEnvironment, SANDBOX_IMAGE } from "../../scripts/seedScenario.js"
import { now } from "../lib/clock.js"
import { runLocal, shuffled, startOracle, withIsolatedDir } from "../lib/helpers.js"
import { round, type Summary, summarize } from "../lib/stats.js"

/**
 * The ways of reaching Docker inside that are compared: runc over the host
 * socket, runc by exec, runsc (gVisor) over the host socket
 * (`--host-uds=create`, as the bench's engine registers it) and by exec.
 */
export const VIAS = ["host-socket", "exec", "runsc-host-socket", "runsc-exec"] as const

/** One sandbox run: ms from the `Sandbox.create` call (null: not reached). */
export interface SandboxRun {
  readonly round: number
  readonly via: (typeof VIAS)[number]
  readonly createdMs: number | null
  readonly spawnedMs: number | null
  readonly readyMs: number | null
  readonly pullMs: number | null
  readonly runMs: number | null
  readonly error: string | null
}

/** One round's limits, ms. */
export interface LimitRun {
  readonly round: number
  /** Host engine: `POST /containers/create` + `/start` of the image, no-op command. */
  readonly hostCreateStartMs: number | null
  /** A fresh dockerd on this machine: spawn to its first `/_ping` OK. */
  readonly dockerdPingMs: number | null
  /** That dockerd's pull of the registry's image (`POST /images/create`). */
  readonly hostPullMs: number | null
}

const Created = Schema.Struct({ Id: Schema.String })

const since = (start: number, at: number | undefined) =>
  at === undefined || !Number.isFinite(at) ? null : round(at - start, 1)

/** The repository and tag of `image` for `POST /images/create`. */
const fromImage = (image: string) => {
  const colon = image.lastIndexOf(":")
  return `fromImage=${encodeURIComponent(image.slice(0, colon))}&tag=${encodeURIComponent(image.slice(colon + 1))}`
}

/** The spec of every sandbox here (the demo's). */
const spec = {
  image: SANDBOX_IMAGE,
  dockerEnabled: true,
  runtime: "runc",
  cpu: 1,
  // The engine's network namespace, where the registry listens on 127.0.0.1.
  network: "host"
} as const

const oneSandbox = (
  engineSocket: string,
  image: string,
  roundIndex: number,
  via: (typeof VIAS)[number]
) =>
  Effect.gen(function* () {
    const marks: Record<string, number> = {}
    const mark = (name: string) => Effect.sync(() => void (marks[name] = now()))
    const start = now()
    const outcome = yield* Effect.gen(function* () {
      const sandbox = yield* Sandbox.create(
        via.startsWith("runsc") ? { ...spec, runtime: "runsc" } : spec,
        {
          engineSocket,
          dockerVia: via.endsWith("host-socket") ? "host-socket" : "exec",
          stopGrace: "5 seconds",
          onEvent: (event) => (event._tag === "Spawned" ? mark("spawned") : Effect.void)
        }
      )
      yield* mark("created")
      yield* sandbox.daemon
      yield* mark("ready")
      yield* Effect.scoped(Effect.flatMap(sandbox.docker.pull(image), (pull) => pull.wait))
      yield* mark("pulled")
      yield* Effect.scoped(
        Effect.flatMap(sandbox.docker.run(image, ["true"], { remove: true }), (run) => run.wait)
      )
      yield* mark("ran")
      yield* sandbox.remove
      return null
    }).pipe(
      Effect.scoped,
      Effect.catchAll((error) => Effect.succeed(error._tag))
    )
    return {
      round: roundIndex,
      via,
      createdMs: since(start, marks.created),
      spawnedMs: since(start, marks.spawned),
      readyMs: since(start, marks.ready),
      pullMs: since(marks.ready ?? Number.NaN, marks.pulled),
      runMs: since(marks.pulled ?? Number.NaN, marks.ran),
      error: outcome
    } satisfies SandboxRun
  })

const limits = (
  host: { readonly socket: string; readonly netns: string; readonly image: string },
  roundIndex: number
) =>
  Effect.gen(function* () {
    const engine = yield* DockerEngine.make(host.socket)
    // The host engine's own create + start of the sandbox image, doing nothing.
    const t0 = now()
    const created = yield* engine.request("POST", "/containers/create", {
      body: {
        Image: SANDBOX_IMAGE,
        Entrypoint: ["true"],
        Cmd: [],
        HostConfig: { NetworkMode: "none" }
      },
      schema: Created
    })
    yield* engine.request("POST", `/containers/${created.Id}/start`)
    const hostCreateStartMs = round(now() - t0, 1)
    yield* Effect.ignore(engine.request("DELETE", `/containers/${created.Id}?force=true&v=true`))

    // A fresh dockerd here, timed to its first `/_ping` by the oracle, then its pull.
    const fresh = yield* Effect.promise(() =>
      withIsolatedDir(async (dir) => {
        const config = isolatedConfig(dir, {
          network: { netns: host.netns },
          extraArgs: ["--ip6tables=false", "--bridge=none"]
        })
        const oracle = await startOracle(config.socket as string, 60_000)
        let spawnedAt = Number.NaN
        const pullMs = await runLocal(
          Effect.gen(function* () {
            const daemon = yield* Dockerd.start(config, ReadinessPolicy.fast, {
              onEvent: (event) =>
                event._tag === "Spawned" ? Effect.sync(() => (spawnedAt = now())) : Effect.void
            })
            const client = yield* DockerEngine.make(daemon.socket)
            const p0 = now()
            yield* client.request("POST", `/images/create?${fromImage(host.image)}`)
            return round(now() - p0, 1)
          }).pipe(Effect.orElseSucceed(() => null))
        )
        const seen = await oracle.result
        oracle.stop()
        return {
          pingMs: seen.okAt === null ? null : round(seen.okAt - spawnedAt, 1),
          pullMs
        }
      })
    )
    return {
      round: roundIndex,
      hostCreateStartMs,
      dockerdPingMs: fresh.pingMs,
      hostPullMs: fresh.pullMs
    } satisfies LimitRun
  }).pipe(Effect.scoped)

/** The pool's claim → `/_ping` answered inside, ms, `claims` times. */
const poolClaims = (engineSocket: string, claims: number) =>
  Effect.gen(function* () {
    const pool = yield* SandboxPool.make({
      spec,
      size: 1,
      engineSocket,
      stopGrace: "5 seconds"
    })
    const times: Array<number> = []
    for (let index = 0; index < claims; index++) {
      // The pool refills in the background: wait for a ready one first.
      yield* pool.awaitReady
      const t0 = now()
      yield* Effect.scoped(
        Effect.gen(function* () {
          const sandbox = yield* pool.claim
          const engine = yield* DockerEngine.make(sandbox.dockerSocket ?? "")
          yield* engine.ping
          times.push(round(now() - t0, 2))
        })
      )
    }
    return times
  }).pipe(Effect.scoped)

/** The section's summary. */
export interface SandboxSummary {
  readonly vias: ReadonlyArray<{
    readonly via: string
    readonly runs: number
    readonly failures: number
    readonly created: Summary
    readonly ready: Summary
    readonly pull: Summary
    readonly run: Summary
  }>
  readonly hostCreateStart: Summary
  readonly dockerdPing: Summary
  readonly hostPull: Summary
  readonly claim: Summary
}

const defined = (values: ReadonlyArray<number | null>): Array<number> =>
  values.filter((v): v is number => v !== null)

/**
 * Runs `rounds` rounds of `vias` and the limits (and `claims` pool claims;
 * 0 for none).
 */
export const run = async (
  rounds: number,
  claims: number,
  log: (line: string) => void,
  vias: ReadonlyArray<(typeof VIAS)[number]> = VIAS
) => {
  const sandboxes: Array<SandboxRun> = []
  const limitRuns: Array<LimitRun> = []
  let claimTimes: Array<number> = []
  const setupStart = now()
  await runLocal(
    Effect.gen(function* () {
      const host = yield* hostEnvironment()
      log(`  host engine, images, registry: ${(now() - setupStart).toFixed(0)} ms`)
      for (let index = 0; index < rounds; index++) {
        for (const what of shuffled([...vias, "limits"] as const)) {
          if (what === "limits") {
            const limit = yield* limits(host, index)
            limitRuns.push(limit)
            log(
              `  sandbox ${index + 1}/${rounds} limits: host create+start ${limit.hostCreateStartMs} ms, fresh dockerd /_ping ${limit.dockerdPingMs} ms, its pull ${limit.hostPullMs} ms`
            )
          } else {
            const one = yield* oneSandbox(host.socket, host.image, index, what)
            sandboxes.push(one)
            log(
              `  sandbox ${index + 1}/${rounds} ${what.padEnd(17)} created ${one.createdMs} ms, ready ${one.readyMs} ms, pull ${one.pullMs} ms, run ${one.runMs} ms${one.error === null ? "" : ` (${one.error})`}`
            )
          }
        }
      }
      if (claims > 0) {
        claimTimes = yield* poolClaims(host.socket, claims)
        log(`  pool: claim → /_ping answered ${claimTimes.join(", ")} ms`)
      }
    })
  )
  const summary: SandboxSummary = {
    vias: vias.map((via) => {
      const mine = sandboxes.filter((one) => one.via === via)
      return {
        via,
        runs: mine.length,
        failures: mine.filter((one) => one.error !== null).length,
        created: summarize(defined(mine.map((one) => one.createdMs))),
        ready: summarize(defined(mine.map((one) => one.readyMs))),
        pull: summarize(defined(mine.map((one) => one.pullMs))),
        run: summarize(defined(mine.map((one) => one.runMs)))
      }
    }),
    hostCreateStart: summarize(defined(limitRuns.map((one) => one.hostCreateStartMs))),
    dockerdPing: summarize(defined(limitRuns.map((one) => one.dockerdPingMs))),
    hostPull: summarize(defined(limitRuns.map((one) => one.hostPullMs))),
    claim: summarize(claimTimes)
  }
  return { rounds, sandboxes, limits: limitRuns, claims: claimTimes, summary }
}
