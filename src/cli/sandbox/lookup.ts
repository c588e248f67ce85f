/**
 * Finding a sandbox again: a sandbox outlives the CLI process that created
 * it, so each command looks it up by name or id on the host engine (it
 * carries the label `sandbox-docker=sandbox`).
 *
 * @since 0.1.0
 */
import * as Effect from "effect/Effect"
import * as Schema from "effect/Schema"
import * as ContainerProcessManager from "../../ContainerProcessManager.js"
import * as DockerEngine from "../../DockerEngine.js"
import * as Sandbox from "../../Sandbox.js"
import * as SandboxDocker from "../../SandboxDocker.js"
import * as Detached from "../detachedDockerd.js"
import { SandboxNotFound } from "./errors.js"

const FoundContainer = Schema.Struct({
  Id: Schema.String,
  Name: Schema.String,
  State: Schema.Struct({ Running: Schema.Boolean }),
  Config: Schema.Struct({
    Labels: Schema.NullishOr(Schema.Record({ key: Schema.String, value: Schema.String })),
    Env: Schema.optionalWith(Schema.NullOr(Schema.Array(Schema.String)), { default: () => null })
  }),
  HostConfig: Schema.optionalWith(Schema.Struct({ Runtime: Schema.optional(Schema.String) }), {
    default: () => ({})
  })
})

/** The sandbox's environment as a record (`KEY=VALUE` entries). */
const envRecord = (entries: ReadonlyArray<string> | null): Record<string, string> =>
  Object.fromEntries(
    (entries ?? []).flatMap((entry) => {
      const equals = entry.indexOf("=")
      return equals < 0 ? [] : [[entry.slice(0, equals), entry.slice(equals + 1)]]
    })
  )

/**
 * The sandbox of that name or id on the engine: its id, name, whether it
 * runs, whether it was created with Docker inside, its runtime, and the
 * registry login its environment asks for (`DOCKER_USERNAME`,
 * `DOCKER_PASSWORD`).
 *
 * @since 0.1.0
 * @category lookup
 */
export const find = (engine: DockerEngine.DockerEngineClient, sandbox: string) =>
  engine
    .request("GET", `/containers/${encodeURIComponent(sandbox)}/json`, { schema: FoundContainer })
    .pipe(
      Effect.catchIf(
        (error) => error._tag === "EngineBadAnswer" && error.status === 404,
        () =>
          Effect.fail(
            new SandboxNotFound({ sandbox, reason: "no such sandbox on the host engine" })
          )
      ),
      Effect.filterOrFail(
        (found) => found.Config.Labels?.[Sandbox.SANDBOX_LABEL] === "sandbox",
        () =>
          new SandboxNotFound({
            sandbox,
            reason: "this container is not a sandbox (no label sandbox-docker=sandbox)"
          })
      ),
      Effect.map((found) => ({
        id: found.Id,
        name: found.Name.replace(/^\//, ""),
        running: found.State.Running,
        docker: found.Config.Labels?.[Detached.DOCKER_LABEL] === "true",
        runtime: found.HostConfig.Runtime === "runsc" ? ("runsc" as const) : ("runc" as const),
        // The login the sandbox's env asks for; its password stays Redacted.
        login: SandboxDocker.loginFromEnv(envRecord(found.Config.Env))
      }))
    )

/**
 * The running sandbox and its process manager.
 *
 * @since 0.1.0
 * @category lookup
 */
export const attach = (socket: string, sandbox: string) =>
  Effect.gen(function* () {
    const engine = yield* DockerEngine.make(socket)
    const found = yield* find(engine, sandbox)
    if (!found.running) {
      return yield* new SandboxNotFound({ sandbox, reason: "is not running" })
    }
    const manager = yield* ContainerProcessManager.make({ socket, containerId: found.id })
    return { engine, found, manager }
  })
