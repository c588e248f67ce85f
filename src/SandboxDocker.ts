/**
 * `sandbox.docker`: Docker commands run inside a sandbox through its process
 * manager. Each validates its arguments before anything runs (image
 * references by Schema; any value that would reach docker as an option is
 * refused), waits for Docker inside lazily, and returns a handle: the exit
 * code, a live Stream of log lines, the collected output.
 *
 * @since 0.1.0
 */
import * as Chunk from "effect/Chunk"
import * as Effect from "effect/Effect"
import * as Redacted from "effect/Redacted"
import * as Schema from "effect/Schema"
import type * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import type { DockerDaemon } from "./Dockerd.js"
import { NestedNetworkUnsupported } from "./Gvisor.js"
import type { ProcessHandle, ProcessManagerShape } from "./ProcessManager.js"
import type { DockerUnavailable } from "./Sandbox.js"

/**
 * A Docker command inside the sandbox exited with a failure (or could not
 * start). `argv` never holds a secret.
 *
 * @since 0.1.0
 * @category errors
 */
export class DockerCommandFailed extends Schema.TaggedError<DockerCommandFailed>()(
  "DockerCommandFailed",
  {
    argv: Schema.Array(Schema.String),
    exitCode: Schema.optional(Schema.Number),
    signal: Schema.optional(Schema.String),
    stderrTail: Schema.Array(Schema.String)
  }
) {
  override get message(): string {
    const how =
      this.signal !== undefined
        ? `signal ${this.signal}`
        : `exit code ${this.exitCode ?? "unknown"}`
    const tail =
      this.stderrTail.length === 0 ? "" : `:\n  ${this.stderrTail.slice(-5).join("\n  ")}`
    return `${this.argv.join(" ")} failed (${how})${tail}`
  }
}

/**
 * An argument was refused before anything ran.
 *
 * @since 0.1.0
 * @category errors
 */
export class InvalidDockerArgument extends Schema.TaggedError<InvalidDockerArgument>()(
  "InvalidDockerArgument",
  { argument: Schema.String, value: Schema.String, problem: Schema.String }
) {
  override get message(): string {
    return `${this.argument} ${JSON.stringify(this.value)}: ${this.problem}`
  }
}

/**
 * An image reference: `[registry[:port]/]name[/name…][:tag][@sha256:digest]`.
 *
 * @since 0.1.0
 * @category schemas
 */
export const ImageReference = Schema.String.pipe(
  Schema.maxLength(255),
  Schema.filter((reference) => isImageReference(reference) || "is not an image reference"),
  Schema.annotations({ identifier: "ImageReference" })
)

const DOMAIN =
  /^(?:localhost|[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?(?:\.[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)*|\[[0-9a-fA-F:]+\])(?::[0-9]{1,5})?$/
const PATH_COMPONENT = /^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$/
const TAG = /^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$/
const DIGEST = /^sha256:[a-f0-9]{64}$/

/**
 * Docker's reference grammar: the first component is a registry only when it
 * holds a `.` or a `:` or is `localhost`; path components are lowercase.
 */
const isImageReference = (reference: string): boolean => {
  const [nameAndTag = "", digest, ...more] = reference.split("@")
  if (more.length > 0 || (digest !== undefined && !DIGEST.test(digest))) return false
  const slash = nameAndTag.lastIndexOf("/")
  const colon = nameAndTag.lastIndexOf(":")
  const [name, tag] =
    colon > slash
      ? [nameAndTag.slice(0, colon), nameAndTag.slice(colon + 1)]
      : [nameAndTag, undefined]
  if (tag !== undefined && !TAG.test(tag)) return false
  const components = name.split("/")
  const first = components[0] ?? ""
  const hasDomain =
    components.length > 1 && (first.includes(".") || first.includes(":") || first === "localhost")
  if (hasDomain && !DOMAIN.test(first)) return false
  const path = hasDomain ? components.slice(1) : components
  return path.length > 0 && path.every((component) => PATH_COMPONENT.test(component))
}

/**
 * The result of a finished command.
 *
 * @since 0.1.0
 * @category models
 */
export interface CommandOutput {
  readonly exitCode: number
  readonly stdout: string
  readonly stderr: string
}

/**
 * A running Docker command. Valid while the scope it was started in is open.
 *
 * @since 0.1.0
 * @category models
 */
export interface DockerCommand {
  /** The argv, secrets redacted. */
  readonly argv: ReadonlyArray<string>
  readonly process: ProcessHandle
  /** Waits for the exit code (any code). */
  readonly exitCode: Effect.Effect<number>
  /** Waits for the exit; fails unless it is 0. */
  readonly wait: Effect.Effect<void, DockerCommandFailed>
  /** Output lines, stdout and stderr, from the beginning, live. */
  readonly lines: Stream.Stream<string>
  /** Waits for the exit and collects stdout and stderr; fails unless exit 0. */
  readonly output: Effect.Effect<CommandOutput, DockerCommandFailed>
}

/**
 * Every way a Docker command fails.
 *
 * @since 0.1.0
 * @category errors
 */
export type DockerError =
  DockerUnavailable | InvalidDockerArgument | DockerCommandFailed | NestedNetworkUnsupported

/** Options collected per command: at most this much output is kept. */
const KEEP_OUTPUT = 8 * 1024 * 1024

/** A value that would be read by docker as an option is refused. */
const plain = (argument: string, value: string): Effect.Effect<string, InvalidDockerArgument> =>
  value.startsWith("-")
    ? Effect.fail(
        new InvalidDockerArgument({
          argument,
          value,
          problem: "starts with '-', so docker would read it as an option; it is refused"
        })
      )
    : value.includes("\0")
      ? Effect.fail(new InvalidDockerArgument({ argument, value, problem: "contains a NUL byte" }))
      : Effect.succeed(value)

const image = (argument: string, value: string) =>
  Effect.zipRight(
    plain(argument, value),
    Schema.decodeUnknown(ImageReference)(value).pipe(
      Effect.mapError(
        () =>
          new InvalidDockerArgument({
            argument,
            value,
            problem: "is not an image reference like registry:5000/name:tag"
          })
      )
    )
  )

const KEY = /^[A-Za-z_][A-Za-z0-9_]*$/

/**
 * The Docker commands of one sandbox.
 *
 * @since 0.1.0
 * @category models
 */
export interface SandboxDocker {
  readonly pull: (
    image: string,
    options?: { readonly quiet?: boolean }
  ) => Effect.Effect<DockerCommand, DockerError, Scope.Scope>
  readonly run: (
    image: string,
    command?: ReadonlyArray<string>,
    options?: {
      readonly name?: string
      readonly detach?: boolean
      readonly remove?: boolean
      readonly volumes?: ReadonlyArray<string>
      readonly env?: Readonly<Record<string, string>>
      /** Default `host`, as the seed's platform: the sandbox has no bridge. */
      readonly network?: string
      /** Default `host`. */
      readonly pid?: string
    }
  ) => Effect.Effect<DockerCommand, DockerError, Scope.Scope>
  readonly build: (options: {
    readonly tag: string
    readonly context: string
    readonly dockerfile?: string
    readonly buildArgs?: Readonly<Record<string, string>>
    readonly noCache?: boolean
    readonly quiet?: boolean
  }) => Effect.Effect<DockerCommand, DockerError, Scope.Scope>
  readonly ps: (options?: {
    readonly all?: boolean
    readonly quiet?: boolean
  }) => Effect.Effect<DockerCommand, DockerError, Scope.Scope>
  readonly images: (options?: {
    readonly all?: boolean
    readonly quiet?: boolean
  }) => Effect.Effect<DockerCommand, DockerError, Scope.Scope>
  readonly logs: (
    container: string,
    options?: { readonly follow?: boolean; readonly tail?: number }
  ) => Effect.Effect<DockerCommand, DockerError, Scope.Scope>
  readonly stop: (container: string) => Effect.Effect<DockerCommand, DockerError, Scope.Scope>
  readonly rm: (
    container: string,
    options?: { readonly force?: boolean }
  ) => Effect.Effect<DockerCommand, DockerError, Scope.Scope>
  readonly rmi: (
    image: string,
    options?: { readonly force?: boolean }
  ) => Effect.Effect<DockerCommand, DockerError, Scope.Scope>
  readonly tag: (
    source: string,
    target: string
  ) => Effect.Effect<DockerCommand, DockerError, Scope.Scope>
  readonly push: (image: string) => Effect.Effect<DockerCommand, DockerError, Scope.Scope>
  /** The password goes through stdin (`--password-stdin`), never argv, logs or events. */
  readonly login: (options: {
    readonly username: string
    readonly password: Redacted.Redacted<string>
    readonly registry?: string
  }) => Effect.Effect<DockerCommand, DockerError, Scope.Scope>
  readonly exec: (
    container: string,
    command: ReadonlyArray<string>
  ) => Effect.Effect<DockerCommand, DockerError, Scope.Scope>
}

/**
 * Runs `docker ARGS` in the sandbox once Docker is ready.
 *
 * @since 0.1.0
 * @category running
 */
export const runDocker = (
  manager: ProcessManagerShape,
  ready: Effect.Effect<DockerDaemon, DockerUnavailable>,
  args: ReadonlyArray<string>,
  options: { readonly stdin?: Redacted.Redacted<string> | undefined } = {}
): Effect.Effect<DockerCommand, DockerUnavailable | DockerCommandFailed, Scope.Scope> =>
  Effect.gen(function* () {
    const daemon = yield* ready
    const argv = [daemon.config.dockerCli, "--host", `unix://${daemon.socket}`, ...args] as const
    const handle = yield* manager
      .exec(argv, {
        keepOutput: KEEP_OUTPUT,
        tailLines: 50,
        killGrace: "3 seconds",
        ...(options.stdin === undefined ? {} : { stdin: Redacted.value(options.stdin) + "\n" })
      })
      .pipe(
        Effect.mapError((error) => new DockerCommandFailed({ argv, stderrTail: [error.message] }))
      )
    const failed = Effect.gen(function* () {
      const status = yield* handle.awaitExit
      return new DockerCommandFailed({
        argv,
        ...(status._tag === "Exited" ? { exitCode: status.code } : { signal: status.signal }),
        stderrTail: yield* handle.logTail
      })
    })
    const exitCode = Effect.map(handle.awaitExit, (status) =>
      status._tag === "Exited" ? status.code : 128
    )
    const wait = Effect.flatMap(exitCode, (code) =>
      code === 0 ? Effect.void : Effect.flatMap(failed, Effect.fail)
    )
    const output = Effect.gen(function* () {
      const chunks = Chunk.toReadonlyArray(yield* Stream.runCollect(handle.output))
      const code = yield* exitCode
      if (code !== 0) return yield* Effect.flatMap(failed, Effect.fail)
      const of = (source: string) =>
        chunks
          .filter((chunk) => chunk.source === source)
          .map((chunk) => chunk.text)
          .join("")
      return { exitCode: code, stdout: of("stdout"), stderr: of("stderr") }
    })
    return {
      argv,
      process: handle,
      exitCode,
      wait,
      lines: handle.output.pipe(
        Stream.map((chunk) => chunk.text),
        Stream.splitLines
      ),
      output
    } satisfies DockerCommand
  }).pipe(Effect.withSpan("SandboxDocker.run", { attributes: { command: args[0] } }))

const flag = (on: boolean | undefined, name: string): Array<string> => (on ? [name] : [])

/**
 * The Docker commands for a sandbox's process manager.
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = (
  manager: ProcessManagerShape,
  ready: Effect.Effect<DockerDaemon, DockerUnavailable>,
  /** The sandbox's runtime: under `runsc` inner containers keep the sandbox's network. */
  sandbox: { readonly runtime?: "runc" | "runsc" | undefined } = {}
): SandboxDocker => {
  const docker = (args: ReadonlyArray<string>, stdin?: Redacted.Redacted<string>) =>
    runDocker(manager, ready, args, { stdin })
  return {
    pull: (ref, options = {}) =>
      Effect.flatMap(image("image", ref), (valid) =>
        docker(["pull", ...flag(options.quiet, "--quiet"), valid])
      ),
    run: (ref, command = [], options = {}) =>
      Effect.gen(function* () {
        const valid = yield* image("image", ref)
        const network = yield* plain("network", options.network ?? "host")
        if (sandbox.runtime === "runsc" && network !== "host")
          return yield* new NestedNetworkUnsupported({ network })
        const args = [
          "run",
          "--network",
          network,
          "--pid",
          yield* plain("pid", options.pid ?? "host")
        ]
        if (options.name !== undefined) args.push("--name", yield* plain("name", options.name))
        if (options.detach) args.push("--detach")
        if (options.remove) args.push("--rm")
        for (const volume of options.volumes ?? [])
          args.push("--volume", yield* plain("volume", volume))
        for (const [key, value] of Object.entries(options.env ?? {})) {
          if (!KEY.test(key))
            return yield* new InvalidDockerArgument({
              argument: "env",
              value: key,
              problem: "is not an environment variable name"
            })
          args.push("--env", `${key}=${value}`)
        }
        args.push(valid)
        // The command runs inside the inner container: its words are its own,
        // after the image, where docker reads no options.
        for (const word of command) args.push(word)
        return yield* docker(args)
      }),
    build: (options) =>
      Effect.gen(function* () {
        const args = ["build", "--tag", yield* image("tag", options.tag)]
        if (options.dockerfile !== undefined)
          args.push("--file", yield* plain("dockerfile", options.dockerfile))
        for (const [key, value] of Object.entries(options.buildArgs ?? {})) {
          if (!KEY.test(key))
            return yield* new InvalidDockerArgument({
              argument: "build-arg",
              value: key,
              problem: "is not a build argument name"
            })
          args.push("--build-arg", `${key}=${value}`)
        }
        args.push(...flag(options.noCache, "--no-cache"), ...flag(options.quiet, "--quiet"))
        args.push(yield* plain("context", options.context))
        return yield* docker(args)
      }),
    ps: (options = {}) =>
      docker(["ps", ...flag(options.all, "--all"), ...flag(options.quiet, "--quiet")]),
    images: (options = {}) =>
      docker(["images", ...flag(options.all, "--all"), ...flag(options.quiet, "--quiet")]),
    logs: (container, options = {}) =>
      Effect.gen(function* () {
        const args = ["logs", ...flag(options.follow, "--follow")]
        if (options.tail !== undefined) {
          if (!Number.isSafeInteger(options.tail) || options.tail < 0) {
            return yield* new InvalidDockerArgument({
              argument: "tail",
              value: String(options.tail),
              problem: "must be a whole number, 0 or more"
            })
          }
          args.push("--tail", String(options.tail))
        }
        args.push(yield* plain("container", container))
        return yield* docker(args)
      }),
    stop: (container) =>
      Effect.flatMap(plain("container", container), (valid) => docker(["stop", valid])),
    rm: (container, options = {}) =>
      Effect.flatMap(plain("container", container), (valid) =>
        docker(["rm", ...flag(options.force, "--force"), valid])
      ),
    rmi: (ref, options = {}) =>
      Effect.flatMap(image("image", ref), (valid) =>
        docker(["rmi", ...flag(options.force, "--force"), valid])
      ),
    tag: (source, target) =>
      Effect.flatMap(Effect.all([image("source", source), image("target", target)]), ([from, to]) =>
        docker(["tag", from, to])
      ),
    push: (ref) => Effect.flatMap(image("image", ref), (valid) => docker(["push", valid])),
    login: (options) =>
      Effect.gen(function* () {
        const args = [
          "login",
          "--username",
          yield* plain("username", options.username),
          "--password-stdin"
        ]
        if (options.registry !== undefined) args.push(yield* plain("registry", options.registry))
        return yield* docker(args, options.password)
      }),
    exec: (container, command) =>
      Effect.gen(function* () {
        if (command.length === 0) {
          return yield* new InvalidDockerArgument({
            argument: "command",
            value: "",
            problem: "is empty"
          })
        }
        return yield* docker(["exec", yield* plain("container", container), ...command])
      })
  }
}

/**
 * Kills and removes every container of the Docker inside (each step bounded),
 * before dockerd itself is stopped.
 *
 * @since 0.1.0
 * @category cleanup
 */
export const removeInnerContainers = (manager: ProcessManagerShape): Effect.Effect<void> =>
  Effect.scoped(
    Effect.gen(function* () {
      const list = yield* manager.exec(["docker", "ps", "--all", "--quiet"], {
        tailLines: 10_000,
        killGrace: "1 second"
      })
      yield* list.awaitExit
      const ids = (yield* list.logTail).filter((line) => /^[0-9a-f]{12,64}$/.test(line.trim()))
      if (ids.length === 0) return
      const remove = yield* manager.exec(["docker", "rm", "--force", "--volumes", ...ids], {
        killGrace: "1 second"
      })
      yield* remove.awaitExit
    })
  ).pipe(Effect.timeout("20 seconds"), Effect.ignore)
