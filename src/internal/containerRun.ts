/**
 * `docker run` over the inner Engine API, as the docker CLI does it without
 * a terminal: create (pulling the image first when it is not there),
 * attach, start, wait, remove. The exit codes are the CLI's (125: the
 * daemon refused; 126 and 127: the command could not be run; else the
 * container's) and so are the words on stderr. No process runs for it
 * inside the sandbox: one exec and one docker CLI fewer per run.
 *
 * @internal
 */
import * as Deferred from "effect/Deferred"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import * as Option from "effect/Option"
import * as Ref from "effect/Ref"
import * as Schema from "effect/Schema"
import type * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import type { DockerEngineClient, EngineError } from "../DockerEngine.js"
import type { SignalName } from "../ProcessManager.js"
import { Exited, type ExitStatus, Signaled } from "../ProcessStatus.js"
import { commandOf, type DockerCommand } from "./dockerCommand.js"
import * as Handle from "./handle.js"
import { framesOf } from "./multiplexed.js"
import { makeOutputBuffer, Texts } from "./outputBuffer.js"

/** A validated run, as `SandboxDocker.run` builds it. */
export interface RunRequest {
  /** The equivalent docker CLI argv (shown in errors). */
  readonly argv: ReadonlyArray<string>
  readonly image: string
  readonly command: ReadonlyArray<string>
  readonly name: string | undefined
  readonly detach: boolean
  readonly remove: boolean
  /** `--volume` values: `SOURCE:TARGET[:OPTIONS]`, or a `TARGET` alone (anonymous). */
  readonly volumes: ReadonlyArray<string>
  /** `KEY=VALUE` entries. */
  readonly env: ReadonlyArray<string>
  readonly network: string
  readonly pid: string
}

const Created = Schema.Struct({ Id: Schema.String })
const Waited = Schema.Struct({ StatusCode: Schema.Int })

/** At most this much output is kept for late readers (as for commands). */
const KEEP_OUTPUT = 8 * 1024 * 1024
/** How long a stopped run's container gets between SIGTERM and SIGKILL (as commands). */
const KILL_GRACE = Duration.seconds(3)
/** How long the attach stream may stay open once the container has exited. */
const STREAM_CLOSE_LIMIT = Duration.seconds(5)

/** The run could not go on: the CLI's exit code, and what it prints. */
class RunRefused {
  readonly _tag = "RunRefused"
  constructor(
    readonly code: number,
    readonly said: string | undefined
  ) {}
}

/** The Engine's words, without the HTTP status this client puts first. */
const daemonSaid = (error: EngineError): string =>
  error._tag === "EngineBadAnswer" ? error.reason.replace(/^HTTP \d+ /, "") : error.message

/** A start's failure, as the docker CLI numbers it. */
const startFailure = (error: EngineError): RunRefused => {
  const said = daemonSaid(error)
  const code = /executable file not found|no such file or directory/.test(said)
    ? 127
    : /permission denied|is a directory/.test(said)
      ? 126
      : 125
  return new RunRefused(code, said)
}

/** The create body of a run: `--volume` as the CLI reads it (a target alone is anonymous). */
const createBody = (request: RunRequest) => {
  const anonymous = request.volumes.filter((volume) => !volume.includes(":"))
  return {
    Image: request.image,
    ...(request.command.length > 0 ? { Cmd: request.command } : {}),
    Env: request.env,
    AttachStdout: !request.detach,
    AttachStderr: !request.detach,
    Tty: false,
    OpenStdin: false,
    ...(anonymous.length > 0
      ? { Volumes: Object.fromEntries(anonymous.map((target) => [target, {}])) }
      : {}),
    HostConfig: {
      NetworkMode: request.network,
      PidMode: request.pid,
      Binds: request.volumes.filter((volume) => volume.includes(":")),
      // Detached, the daemon removes it at its exit; attached, this run does.
      AutoRemove: request.remove && request.detach
    }
  }
}

/**
 * Runs `request` over `engine` once `ready`, as a {@link DockerCommand}
 * whose `process.pid` is 0. `pull` fetches a missing image (its lines go
 * to stderr, as the CLI prints them). Closing the scope while the
 * container runs stops it (SIGTERM, 3 s, SIGKILL) and removes it with
 * `remove`; a detached container runs on.
 */
export const runOverApi = <E>(
  engine: DockerEngineClient,
  ready: Effect.Effect<unknown, E>,
  request: RunRequest,
  pull: (image: string) => Effect.Effect<DockerCommand, never, Scope.Scope>
): Effect.Effect<DockerCommand, E, Scope.Scope> =>
  Effect.gen(function* () {
    yield* ready
    const output = yield* makeOutputBuffer(50, KEEP_OUTPUT)
    const exited = yield* Deferred.make<ExitStatus>()
    const container = yield* Ref.make(Option.none<string>())
    const print = (source: "stdout" | "stderr", text: string) => output.publish({ source, text })
    const texts = new Texts(output)
    const query = request.name === undefined ? "" : `?name=${encodeURIComponent(request.name)}`

    const create = engine.request("POST", `/containers/create${query}`, {
      body: createBody(request),
      schema: Created
    })
    const pulled = Effect.scoped(
      Effect.gen(function* () {
        yield* print("stderr", `Unable to find image '${request.image}' locally\n`)
        const pulling = yield* pull(request.image)
        yield* Stream.runForEach(pulling.lines, (line) => print("stderr", `${line}\n`))
        // Its failure is on stderr already, in the daemon's words.
        if ((yield* pulling.exitCode) !== 0)
          return yield* Effect.fail(new RunRefused(125, undefined))
      })
    )
    const created = create.pipe(
      Effect.catchIf(
        (error) =>
          error._tag === "EngineBadAnswer" &&
          error.status === 404 &&
          /no such image/i.test(error.reason),
        () => Effect.zipRight(pulled, create)
      ),
      Effect.mapError((error) =>
        error instanceof RunRefused ? error : new RunRefused(125, daemonSaid(error))
      )
    )
    const start = (id: string) =>
      engine.request("POST", `/containers/${id}/start`).pipe(
        Effect.mapError(startFailure),
        Effect.tapError(() => (request.remove ? removeContainer(id) : Effect.void))
      )
    const removeContainer = (id: string) =>
      engine
        .request("DELETE", `/containers/${id}?force=true&v=true`)
        .pipe(Effect.timeout("30 seconds"), Effect.ignore)

    const running = Effect.gen(function* () {
      const { Id: id } = yield* created
      yield* Ref.set(container, Option.some(id))
      if (request.detach) {
        yield* start(id)
        yield* print("stdout", `${id}\n`)
        return 0
      }
      const connection = yield* engine
        .upgrade(`/containers/${id}/attach?stream=1&stdout=1&stderr=1`, {})
        .pipe(Effect.mapError((error) => new RunRefused(125, daemonSaid(error))))
      const reading = yield* framesOf(connection).pipe(
        Stream.runForEach((frame) => texts.publish(frame.source, frame.payload)),
        Effect.zipRight(texts.flush),
        Effect.fork
      )
      yield* start(id)
      const waited = yield* engine
        .request("POST", `/containers/${id}/wait`, { schema: Waited })
        .pipe(Effect.mapError((error) => new RunRefused(125, daemonSaid(error))))
      yield* Fiber.join(reading).pipe(Effect.timeout(STREAM_CLOSE_LIMIT), Effect.ignore)
      if (request.remove) yield* removeContainer(id)
      return waited.StatusCode
    }).pipe(Effect.scoped)

    const fiber = yield* running.pipe(
      Effect.catchAll((refused) =>
        Effect.as(
          refused.said === undefined
            ? Effect.void
            : print("stderr", `docker: Error response from daemon: ${refused.said}.\n`),
          refused.code
        )
      ),
      Effect.flatMap((code) => Deferred.succeed(exited, new Exited({ code }))),
      Effect.onInterrupt(() => Deferred.succeed(exited, new Signaled({ signal: "SIGKILL" }))),
      Effect.ensuring(output.end),
      Effect.withSpan("SandboxDocker.run", { attributes: { image: request.image } }),
      Effect.forkScoped
    )

    const deliver = (signal: SignalName): Effect.Effect<boolean> =>
      Effect.flatMap(
        Ref.get(container),
        Option.match({
          onNone: () => Effect.succeed(false),
          onSome: (id) =>
            engine.request("POST", `/containers/${id}/kill?signal=${signal}`).pipe(
              Effect.as(true),
              Effect.orElseSucceed(() => false)
            )
        })
      )
    // Closed while attached: the container is stopped (and removed with
    // `remove`), as the CLI's SIGTERM would, before the run's fiber goes.
    yield* Effect.addFinalizer(() =>
      Effect.gen(function* () {
        if (request.detach || (yield* Deferred.isDone(exited))) return
        yield* deliver("SIGTERM")
        const stopped = yield* Deferred.await(exited).pipe(
          Effect.interruptible,
          Effect.timeout(KILL_GRACE),
          Effect.option
        )
        if (Option.isNone(stopped)) yield* deliver("SIGKILL")
        yield* Fiber.interrupt(fiber)
        const id = yield* Ref.get(container)
        if (request.remove && Option.isSome(id)) yield* removeContainer(id.value)
      })
    )
    return commandOf(
      request.argv,
      Handle.make({ pid: 0, argv: request.argv, exited, output, deliver })
    )
  })
