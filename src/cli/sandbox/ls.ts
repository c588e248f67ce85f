/**
 * `sandbox-docker sandbox ls`: the engine's sandboxes, each with its owner,
 * what `sandbox gc` would do with it and why, and the state of Docker
 * inside: running, restarting or exited, and the crashes its launcher
 * recorded (see `../detachedDockerd.ts`).
 *
 * @since 0.2.0
 */
import * as Effect from "effect/Effect"
import * as ContainerProcessManager from "../../ContainerProcessManager.js"
import { describe } from "../../ProcessStatus.js"
import * as Sandbox from "../../Sandbox.js"
import * as Detached from "../detachedDockerd.js"
import * as Shared from "../options.js"
import * as Planned from "../planned.js"
import * as Reporter from "../Reporter.js"
import * as SandboxOptions from "./options.js"

/**
 * What `sandbox ls` will do, validated.
 *
 * @since 0.2.0
 * @category models
 */
export interface SandboxLsPlan {
  readonly _tag: "SandboxLs"
  readonly engine: string
  readonly json: boolean
}

const config = { engine: SandboxOptions.engine, json: Shared.json }

const plan = (
  opts: Shared.ValuesOf<typeof config>
): Effect.Effect<SandboxLsPlan, Shared.CliInputError> =>
  Effect.map(SandboxOptions.decodeEngine(opts.engine), (engine) => ({
    _tag: "SandboxLs" as const,
    engine,
    json: opts.json
  }))

/** Docker inside a running sandbox created by `sandbox create --docker`, as its launcher's files say. */
const dockerInside = (socket: string, id: string) =>
  Effect.scoped(
    Effect.gen(function* () {
      const manager = yield* ContainerProcessManager.make({ socket, containerId: id })
      const state = yield* Detached.readState(manager)
      const crashes = yield* Detached.readCrashes(manager)
      return {
        state: state._tag.toLowerCase(),
        ...(state._tag === "None" ? {} : { pid: state.pid }),
        ...(state._tag === "Exited" ? { exit: describe(state.status) } : {}),
        restarts: crashes.length,
        crashes: crashes.map((crash) => ({
          at: new Date(crash.at * 1000).toISOString(),
          status: describe(crash.status),
          restart: crash.restart
        }))
      }
    })
  )

/**
 * Runs `sandbox ls`: a `sandbox` event per sandbox.
 *
 * @since 0.2.0
 * @category commands
 */
export const execute = (lsPlan: SandboxLsPlan) =>
  Effect.gen(function* () {
    const reporter = Reporter.make({ json: lsPlan.json })
    const judged = yield* Sandbox.reap({ engineSocket: lsPlan.engine, dryRun: true })
    for (const sandbox of judged) {
      const docker =
        sandbox.running && sandbox.labels[Detached.DOCKER_LABEL] === "true"
          ? yield* dockerInside(lsPlan.engine, sandbox.id)
          : null
      const gc = sandbox.verdict._tag === "Keep" ? "keep" : "reap"
      const inside =
        docker === null
          ? ""
          : `; docker ${docker.state}${docker.pid === undefined ? "" : ` (pid ${docker.pid})`}, ${docker.restarts} restarts${docker.crashes.length > 0 ? `, last crash ${docker.crashes.at(-1)?.status} at ${docker.crashes.at(-1)?.at}` : ""}`
      yield* reporter.info(
        "sandbox",
        {
          id: sandbox.id,
          name: sandbox.name,
          running: sandbox.running,
          owner: sandbox.owner ?? null,
          gc,
          reason: sandbox.verdict.reason,
          docker
        },
        `${sandbox.name} (${sandbox.id.slice(0, 12)}) ${sandbox.running ? "running" : "stopped"}, owner ${sandbox.owner ?? "none"}: gc would ${gc} (${sandbox.verdict.reason})${inside}`
      )
    }
  })

/**
 * The `sandbox ls` command, with what to do with its validated plan.
 *
 * @since 0.2.0
 * @category commands
 */
export const command = Planned.command(
  "ls",
  config,
  plan,
  "List the sandboxes on the host engine: owner, what sandbox gc would do and why, and Docker inside (running, restarting or exited; its restarts and crashes)."
)
