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
import * as Detached from "../detachedDockerd.js"
import { SandboxNotFound } from "./errors.js"

const FoundContainer = Schema.Struct({
  Id: Schema.String,
  Name: Schema.String,
  State: Schema.Struct({ Running: Schema.Boolean }),
  Config: Schema.Struct({
    Labels: Schema.NullishOr(Schema.Record({ key: Schema.String, value: Schema.String }))
  })
})

/**
 * The sandbox of that name or id on the engine: its id, name, whether it
 * runs, and whether it was created with Docker inside.
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
        docker: found.Config.Labels?.[Detached.DOCKER_LABEL] === "true"
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
