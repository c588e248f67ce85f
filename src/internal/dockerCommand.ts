/**
 * One docker (or docker-compose) command run inside a sandbox through its
 * process manager, and the argument checks every command shares. Public
 * through `SandboxDocker`, `SandboxCompose` and `SandboxVolume`.
 *
 * @internal
 */
import * as Chunk from "effect/Chunk"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as Redacted from "effect/Redacted"
import * as Schema from "effect/Schema"
import type * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import type { DockerDaemon } from "../Dockerd.js"
import type { BinaryNotFound, SpawnFailed } from "../errors.js"
import type {
  OutputChunk,
  OutputSource,
  ProcessHandle,
  ProcessManagerShape
} from "../ProcessManager.js"
import { redactArgv, redactText } from "../Redaction.js"

/**
 * A Docker command inside the sandbox exited with a failure (or could not
 * start). `argv` and `stderrTail` never hold a secret.
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
 * A command succeeded but printed what could not be read (JSON that does not
 * match what Docker answers).
 *
 * @since 0.1.0
 * @category errors
 */
export class DockerOutputInvalid extends Schema.TaggedError<DockerOutputInvalid>()(
  "DockerOutputInvalid",
  { argv: Schema.Array(Schema.String), problem: Schema.String }
) {
  override get message(): string {
    return `could not read the output of ${this.argv.join(" ")}: ${this.problem}. Is the docker (or docker-compose) in the sandbox image a supported one?`
  }
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
 * One line of a command's output, and where it came from.
 *
 * @since 0.1.0
 * @category models
 */
export interface OutputLine {
  readonly source: OutputSource
  readonly line: string
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
  /** The process; its output and log tail have secrets redacted. */
  readonly process: ProcessHandle
  /** Waits for the exit code (any code). */
  readonly exitCode: Effect.Effect<number>
  /** Waits for the exit; fails unless it is 0. */
  readonly wait: Effect.Effect<void, DockerCommandFailed>
  /** Output lines, stdout and stderr, from the beginning, live, as they are printed. */
  readonly lines: Stream.Stream<string>
  /** The same lines, each with its source (docker-compose reports progress on stderr). */
  readonly outputLines: Stream.Stream<OutputLine>
  /** Waits for the exit and collects stdout and stderr; fails unless exit 0. */
  readonly output: Effect.Effect<CommandOutput, DockerCommandFailed>
}

/** At most this much output is kept per command, for late readers. */
const KEEP_OUTPUT = 8 * 1024 * 1024

/**
 * Splits output chunks into lines per source (a line of stdout never takes
 * the end of a stderr chunk); a last line without a newline comes at the end.
 *
 * @since 0.1.0
 * @category output
 */
export const splitLines = (output: Stream.Stream<OutputChunk>): Stream.Stream<OutputLine> =>
  output.pipe(
    Stream.map(Option.some),
    Stream.concat(Stream.succeed(Option.none<OutputChunk>())),
    Stream.mapAccum(
      { stdout: "", stderr: "" } as Readonly<Record<OutputSource, string>>,
      (partial, next): readonly [Readonly<Record<OutputSource, string>>, Array<OutputLine>] => {
        if (Option.isNone(next)) {
          const rest = (["stdout", "stderr"] as const)
            .filter((source) => partial[source].length > 0)
            .map((source) => ({ source, line: partial[source] }))
          return [{ stdout: "", stderr: "" }, rest]
        }
        const { source, text } = next.value
        const parts = (partial[source] + text).split("\n")
        const last = parts.pop() ?? ""
        return [
          { ...partial, [source]: last },
          parts.map((line) => ({ source, line: line.replace(/\r$/, "") }))
        ]
      }
    ),
    Stream.flattenIterables
  )

/** A handle whose output and log tail have `secrets` replaced. */
const redactedHandle = (
  handle: ProcessHandle,
  secrets: ReadonlyArray<Redacted.Redacted<string>>
): ProcessHandle =>
  secrets.length === 0
    ? handle
    : {
        ...handle,
        argv: redactArgv(handle.argv, secrets),
        output: Stream.map(handle.output, (chunk) => ({
          source: chunk.source,
          text: redactText(chunk.text, secrets)
        })),
        logTail: Effect.map(handle.logTail, (lines) =>
          lines.map((line) => redactText(line, secrets))
        )
      }

/**
 * Runs `argvFor(daemon)` in the sandbox once Docker is ready. `stdin` (a
 * secret or a file's text) is written to the command's standard input and
 * never appears in argv; a secret given there is also replaced in
 * everything the command prints.
 *
 * @since 0.1.0
 * @category running
 */
export const runInSandbox = <E, S = DockerCommandFailed>(
  manager: ProcessManagerShape,
  ready: Effect.Effect<DockerDaemon, E>,
  argvFor: (daemon: DockerDaemon) => readonly [string, ...Array<string>],
  options: {
    readonly stdin?: Redacted.Redacted<string> | string | undefined
    /** Environment of the command, besides the sandbox's. */
    readonly env?: (daemon: DockerDaemon) => Readonly<Record<string, string>>
    /** What a command that could not start fails with; default `DockerCommandFailed`. */
    readonly spawnError?: (
      error: BinaryNotFound | SpawnFailed,
      argv: ReadonlyArray<string>
    ) => S | DockerCommandFailed
    /** The traced span's name and attributes. */
    readonly span?: { readonly name: string; readonly attributes?: Record<string, unknown> }
  } = {}
): Effect.Effect<DockerCommand, E | S | DockerCommandFailed, Scope.Scope> =>
  Effect.gen(function* () {
    const daemon = yield* ready
    const secrets = Redacted.isRedacted(options.stdin) ? [options.stdin] : []
    const fullArgv = argvFor(daemon)
    const argv = redactArgv(fullArgv, secrets)
    const stdin =
      options.stdin === undefined
        ? {}
        : Redacted.isRedacted(options.stdin)
          ? { stdin: Redacted.value(options.stdin) + "\n" }
          : { stdin: options.stdin }
    const handle = yield* manager
      .exec(fullArgv, {
        keepOutput: KEEP_OUTPUT,
        tailLines: 50,
        killGrace: "3 seconds",
        ...(options.env === undefined ? {} : { env: options.env(daemon) }),
        ...stdin
      })
      .pipe(
        Effect.map((started) => redactedHandle(started, secrets)),
        Effect.mapError((error) =>
          options.spawnError !== undefined
            ? options.spawnError(error, argv)
            : new DockerCommandFailed({ argv, stderrTail: [redactText(error.message, secrets)] })
        )
      )
    return commandOf(argv, handle)
  }).pipe(
    Effect.withSpan(options.span?.name ?? "SandboxDocker.run", {
      attributes: options.span?.attributes ?? {}
    })
  )

/**
 * A {@link DockerCommand} of a started process: its exit code, its failure
 * with the log tail, its output collected or as lines. `argv` is what errors
 * show (secrets already redacted).
 *
 * @since 0.2.0
 * @category running
 */
export const commandOf = (argv: ReadonlyArray<string>, handle: ProcessHandle): DockerCommand => {
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
  const outputLines = splitLines(handle.output)
  return {
    argv,
    process: handle,
    exitCode,
    wait,
    lines: Stream.map(outputLines, (line) => line.line),
    outputLines,
    output
  }
}

/**
 * Runs `docker ARGS` in the sandbox once Docker is ready, against the
 * daemon's own socket.
 *
 * @since 0.1.0
 * @category running
 */
export const runDocker = <E>(
  manager: ProcessManagerShape,
  ready: Effect.Effect<DockerDaemon, E>,
  args: ReadonlyArray<string>,
  options: { readonly stdin?: Redacted.Redacted<string> | undefined } = {}
): Effect.Effect<DockerCommand, E | DockerCommandFailed, Scope.Scope> =>
  runInSandbox(
    manager,
    ready,
    (daemon) => [daemon.config.dockerCli, "--host", `unix://${daemon.socket}`, ...args],
    { stdin: options.stdin, span: { name: "SandboxDocker.run", attributes: { command: args[0] } } }
  )

/**
 * A value docker would read as an option (a leading `-`), or with a NUL
 * byte, is refused.
 *
 * @since 0.1.0
 * @category validation
 */
export const plain = (
  argument: string,
  value: string
): Effect.Effect<string, InvalidDockerArgument> =>
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

/**
 * A value checked by a Schema (after {@link plain}); `problem` says what it
 * should look like.
 *
 * @since 0.1.0
 * @category validation
 */
export const checked = <A extends string>(
  schema: Schema.Schema<A, string>,
  argument: string,
  value: string,
  problem: string
): Effect.Effect<A, InvalidDockerArgument> =>
  Effect.zipRight(
    plain(argument, value),
    Schema.decodeUnknown(schema)(value).pipe(
      Effect.mapError(() => new InvalidDockerArgument({ argument, value, problem }))
    )
  )

/**
 * An absolute path inside the sandbox: starts with `/`, no NUL byte, no
 * newline.
 *
 * @since 0.1.0
 * @category schemas
 */
export const SandboxPath = Schema.String.pipe(
  Schema.maxLength(4096),
  Schema.pattern(/^\/[^\0\n]*$/),
  Schema.annotations({ identifier: "SandboxPath" })
)

/**
 * `--flag` when `on`.
 *
 * @since 0.1.0
 * @category validation
 */
export const flag = (on: boolean | undefined, name: string): Array<string> => (on ? [name] : [])

/**
 * An environment variable or build argument name.
 *
 * @since 0.1.0
 * @category validation
 */
export const KEY = /^[A-Za-z_][A-Za-z0-9_]*$/

/**
 * A whole number of lines, 0 or more (`--tail`).
 *
 * @since 0.1.0
 * @category validation
 */
export const tailLines = (value: number): Effect.Effect<string, InvalidDockerArgument> =>
  Number.isSafeInteger(value) && value >= 0
    ? Effect.succeed(String(value))
    : Effect.fail(
        new InvalidDockerArgument({
          argument: "tail",
          value: String(value),
          problem: "must be a whole number, 0 or more"
        })
      )
