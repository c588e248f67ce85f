/**
 * A small Docker Engine API client over a unix socket: `GET /_ping`,
 * `GET /version`, `GET /info`, each answer decoded with Schema; a generic
 * JSON `request` for the rest of the API, and `upgrade` for the endpoints that
 * hijack the connection (exec and attach streams). As a service: the
 * `DockerEngine` Tag with `layer(socket)` and `layerTest(answers)`, and the
 * `DockerEngineConnector` for code that opens clients to sockets it learns of.
 *
 * @since 0.1.0
 */
import * as Http from "node:http"
import type * as Net from "node:net"
import * as Chunk from "effect/Chunk"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Layer from "effect/Layer"
import * as ParseResult from "effect/ParseResult"
import * as Schema from "effect/Schema"
import type * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"

/**
 * The Engine client of one socket, as a service.
 *
 * @since 0.2.0
 * @category tags
 */
export class DockerEngine extends Context.Tag("sandbox-docker/DockerEngine")<
  DockerEngine,
  DockerEngineClient
>() {}

/**
 * A client for one Engine socket.
 *
 * @since 0.1.0
 * @category models
 */
export interface DockerEngineClient {
  readonly socket: string
  /** `GET /_ping`: held by a dockerd that listens but does not serve yet. */
  readonly ping: Effect.Effect<PingAnswer, EngineError>
  /** `GET /version`. */
  readonly version: Effect.Effect<VersionAnswer, EngineError>
  /** `GET /info`, what `docker info` shows. */
  readonly info: Effect.Effect<InfoAnswer, EngineError>
  /**
   * Any Engine API call: `body` is sent as JSON, any 2xx status is success.
   * With a `schema` the JSON answer is decoded with it (excess fields are
   * ignored); without one the answer is discarded.
   */
  readonly request: {
    <A, I>(
      method: Method,
      path: string,
      options: { readonly body?: unknown; readonly schema: Schema.Schema<A, I> }
    ): Effect.Effect<A, EngineError>
    (
      method: Method,
      path: string,
      options?: { readonly body?: unknown }
    ): Effect.Effect<void, EngineError>
  }
  /**
   * A call whose answer is a stream of lines (`POST /images/create`'s
   * progress, one JSON message a line): the lines as they arrive, on a
   * connection of its own, closed when the stream ends or is interrupted.
   * An error status fails the stream with `EngineBadAnswer` before any line.
   */
  readonly lines: (
    method: Method,
    path: string,
    options?: { readonly body?: unknown }
  ) => Stream.Stream<string, EngineError>
  /**
   * `POST path` with a JSON body, asking the Engine to upgrade the connection
   * (`Upgrade: tcp`), as `docker exec` and `docker attach` do. The connection
   * is closed when the scope closes.
   */
  readonly upgrade: (
    path: string,
    body: unknown
  ) => Effect.Effect<UpgradedConnection, EngineError, Scope.Scope>
}

/**
 * Opens Engine clients to sockets known only at run time (a daemon's,
 * once started): `layerConnector` connects for real, `layerConnectorTest`
 * hands out test clients.
 *
 * @since 0.2.0
 * @category tags
 */
export class DockerEngineConnector extends Context.Tag("sandbox-docker/DockerEngineConnector")<
  DockerEngineConnector,
  {
    /** A client of `socket`, its connections closed with the scope. */
    readonly connect: (socket: string) => Effect.Effect<DockerEngineClient, never, Scope.Scope>
  }
>() {}

/**
 * The answer to `GET /_ping`: the body `OK`, the API version header and
 * the Engine's version from its `Server` header (`Docker/20.10.24 (linux)`).
 *
 * @since 0.1.0
 * @category models
 */
export class PingAnswer extends Schema.Class<PingAnswer>("PingAnswer")({
  apiVersion: Schema.optional(Schema.String),
  serverVersion: Schema.optional(Schema.String)
}) {}

/**
 * The fields of `GET /version` this project reads.
 *
 * @since 0.1.0
 * @category models
 */
export class VersionAnswer extends Schema.Class<VersionAnswer>("VersionAnswer")({
  Version: Schema.String,
  ApiVersion: Schema.String
}) {}

/**
 * The fields of `GET /info` (what `docker info` shows) this project reads.
 *
 * @since 0.1.0
 * @category models
 */
export class InfoAnswer extends Schema.Class<InfoAnswer>("InfoAnswer")({
  ServerVersion: Schema.String,
  Driver: Schema.String,
  DockerRootDir: Schema.optional(Schema.String),
  Containers: Schema.optional(Schema.Number),
  CgroupVersion: Schema.optional(Schema.String)
}) {}

/**
 * The socket is not there or nobody accepts on it (`ENOENT`, `ECONNREFUSED`):
 * the daemon is not up (yet).
 *
 * @since 0.1.0
 * @category errors
 */
export class EngineUnreachable extends Schema.TaggedError<EngineUnreachable>()(
  "EngineUnreachable",
  { socket: Schema.String, code: Schema.String, reason: Schema.String }
) {
  override get message(): string {
    return `cannot reach the Docker Engine at ${this.socket}: ${this.code} (${this.reason})`
  }
}

/**
 * The Engine answered, but not with what was asked for: an error status or an
 * answer that does not decode.
 *
 * @since 0.1.0
 * @category errors
 */
export class EngineBadAnswer extends Schema.TaggedError<EngineBadAnswer>()("EngineBadAnswer", {
  socket: Schema.String,
  path: Schema.String,
  reason: Schema.String,
  /** The HTTP status, when the Engine answered with an error status. */
  status: Schema.optional(Schema.Number)
}) {
  override get message(): string {
    return `Docker Engine at ${this.socket} answered ${this.path} badly: ${this.reason}`
  }
}

/**
 * Why an Engine request failed: nobody serves there, or a bad answer.
 *
 * @since 0.1.0
 * @category errors
 */
export type EngineError = EngineUnreachable | EngineBadAnswer

/**
 * An HTTP method of the Engine API.
 *
 * @since 0.1.0
 * @category models
 */
export type Method = "GET" | "HEAD" | "POST" | "PUT" | "DELETE"

/**
 * A connection the Engine took over after `101 Switching Protocols`: raw bytes
 * both ways (for exec: the multiplexed output in, the standard input out).
 *
 * @since 0.1.0
 * @category models
 */
export interface UpgradedConnection {
  /** The socket; destroyed when the scope that opened it closes. */
  readonly socket: Net.Socket
  /** Bytes the Engine sent right after its answer, before any `data` event. */
  readonly head: Uint8Array
}

/** Error codes meaning "nobody is listening there (yet)". */
const NOT_LISTENING = new Set(["ENOENT", "ECONNREFUSED", "ECONNRESET", "EPIPE"])

/** Answers larger than this are refused: the Engine's JSON answers are small. */
const MAX_ANSWER_BYTES = 16 * 1024 * 1024

/** A raw answer: the status, the headers this client reads, the body. */
interface RawAnswer {
  readonly status: number
  readonly apiVersion: string | undefined
  readonly server: string | undefined
  readonly body: string
}

/**
 * Creates a client for the Engine listening on the unix socket `socket`. Its
 * connections (kept alive between requests, so that probes and liveness
 * checks do not connect each time) are closed when the scope closes.
 *
 * Requests go through `node:http` directly: readiness and liveness send them
 * in loops, and this costs a fraction of the CPU of a general-purpose HTTP
 * client (see bench/micro.ts). An interrupted request
 * (a probe's timeout) destroys its connection.
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = (socket: string): Effect.Effect<DockerEngineClient, never, Scope.Scope> =>
  Effect.gen(function* () {
    const agent = yield* Effect.acquireRelease(
      Effect.sync(() => new Http.Agent({ keepAlive: true, maxSockets: 8, scheduling: "lifo" })),
      (agent) => Effect.sync(() => agent.destroy())
    )

    /**
     * One exchange. Interrupted, it destroys its request and with it the
     * connection, which may be mid-answer and cannot serve another.
     */
    const exchange = (method: Method, path: string, payload: string | undefined) =>
      Effect.async<RawAnswer, EngineError>((resume) => {
        const idempotent = method === "GET" || method === "HEAD" || method === "DELETE"
        let settled = false
        const settle = (result: Either.Either<RawAnswer, EngineError>) => {
          if (settled) return
          settled = true
          resume(result)
        }
        const start = (retry: boolean): Http.ClientRequest => {
          const request = Http.request({
            socketPath: socket,
            agent,
            method,
            path,
            headers:
              payload === undefined
                ? {}
                : {
                    "Content-Type": "application/json",
                    "Content-Length": Buffer.byteLength(payload)
                  }
          })
          request.on("response", (response) => {
            const chunks: Array<Buffer> = []
            let size = 0
            response.on("data", (chunk: Buffer) => {
              size += chunk.length
              if (size > MAX_ANSWER_BYTES) {
                response.destroy()
                settle(
                  Either.left(
                    new EngineBadAnswer({
                      socket,
                      path,
                      reason: `the answer is larger than ${MAX_ANSWER_BYTES} bytes`
                    })
                  )
                )
              } else chunks.push(chunk)
            })
            response.on("end", () => {
              const header = response.headers["api-version"]
              const server = response.headers["server"]
              settle(
                Either.right({
                  status: response.statusCode ?? 0,
                  apiVersion: typeof header === "string" ? header : undefined,
                  server: typeof server === "string" ? server : undefined,
                  body: Buffer.concat(chunks).toString("utf8")
                })
              )
            })
            response.on("error", (error) =>
              settle(Either.left(connectionError(socket, path, error, error.message)))
            )
          })
          request.on("error", (error: NodeJS.ErrnoException) => {
            // A kept-alive connection the Engine closed meanwhile: one more
            // try on a fresh one, as browsers do, for idempotent requests only
            // (a POST may have been acted on before the reset).
            if (retry && idempotent && request.reusedSocket && error.code === "ECONNRESET") {
              current = start(false)
              return
            }
            settle(Either.left(connectionError(socket, path, error, error.message)))
          })
          request.end(payload)
          return request
        }
        let current = start(true)
        return Effect.sync(() => {
          settled = true
          current.destroy()
        })
      })

    /** A 2xx answer, or the Engine's error as an `EngineBadAnswer`. */
    const statusOk =
      (path: string) =>
      (answer: RawAnswer): Either.Either<RawAnswer, EngineError> =>
        answer.status >= 200 && answer.status < 300
          ? Either.right(answer)
          : Either.left(
              new EngineBadAnswer({
                socket,
                path,
                status: answer.status,
                reason: `HTTP ${answer.status} ${errorText(answer.body)}`
              })
            )

    const parseJson = (path: string, answer: RawAnswer): Either.Either<unknown, EngineError> => {
      try {
        return Either.right(JSON.parse(answer.body) as unknown)
      } catch (error) {
        return Either.left(
          new EngineBadAnswer({ socket, path, reason: `not JSON: ${describe(error)}` })
        )
      }
    }

    const send = <A>(
      method: Method,
      path: string,
      body: unknown,
      read: (answer: RawAnswer) => Effect.Effect<A, EngineError>
    ): Effect.Effect<A, EngineError> =>
      exchange(method, path, body === undefined ? undefined : JSON.stringify(body)).pipe(
        Effect.flatMap(statusOk(path)),
        Effect.flatMap(read),
        // No call-site stack trace: readiness and liveness probes send
        // requests in a loop, and it would be captured on every one.
        Effect.withSpan("DockerEngine.request", {
          attributes: { socket, method, path },
          captureStackTrace: false
        })
      )

    const decode =
      <A, I>(path: string, schema: Schema.Schema<A, I>) =>
      (answer: RawAnswer): Effect.Effect<A, EngineError> => {
        const parsed = parseJson(path, answer)
        if (Either.isLeft(parsed)) return Either.left(parsed.left)
        return Effect.mapError(
          Schema.decodeUnknown(schema, { onExcessProperty: "ignore" })(parsed.right),
          (error) => new EngineBadAnswer({ socket, path, reason: error.message })
        )
      }

    const request = (
      method: Method,
      path: string,
      options: { readonly body?: unknown; readonly schema?: Schema.Schema<unknown, unknown> } = {}
    ): Effect.Effect<unknown, EngineError> =>
      send(
        method,
        path,
        options.body,
        options.schema === undefined ? () => Effect.void : decode(path, options.schema)
      )

    const readPing = (answer: RawAnswer): Either.Either<PingAnswer, EngineError> =>
      answer.body.trim() === "OK"
        ? Either.right(
            new PingAnswer({
              apiVersion: answer.apiVersion,
              serverVersion: engineVersion(answer.server)
            })
          )
        : Either.left(
            new EngineBadAnswer({
              socket,
              path: "/_ping",
              reason: `unexpected body ${JSON.stringify(answer.body.slice(0, 100))}`
            })
          )
    /** A JSON answer decoded at once (the Engine's own answers: synchronous schemas). */
    const readJson = <A, I>(path: string, schema: Schema.Schema<A, I>) => {
      const decodeNow = Schema.decodeUnknownEither(schema, { onExcessProperty: "ignore" })
      return (answer: RawAnswer): Either.Either<A, EngineError> =>
        Either.flatMap(parseJson(path, answer), (parsed) =>
          Either.mapLeft(
            decodeNow(parsed),
            (error) =>
              new EngineBadAnswer({
                socket,
                path,
                reason: ParseResult.TreeFormatter.formatErrorSync(error)
              })
          )
        )
    }
    return DockerEngine.of({
      socket,
      ping: send("GET", "/_ping", undefined, readPing),
      version: send("GET", "/version", undefined, readJson("/version", VersionAnswer)),
      info: send("GET", "/info", undefined, readJson("/info", InfoAnswer)),
      request: request as DockerEngineClient["request"],
      lines: (method, path, options = {}) => streamLines(socket, method, path, options.body),
      upgrade: (path, body) => upgrade(socket, path, body)
    })
  })

/**
 * The client of `socket` as the `DockerEngine` service, its connections
 * closed with the layer.
 *
 * @since 0.2.0
 * @category layers
 */
export const layer = (socket: string): Layer.Layer<DockerEngine> =>
  Layer.scoped(DockerEngine, make(socket))

/**
 * What a test client answers. Each answer is an Effect run at every call,
 * so it can change with time (`Clock`, a `Ref`) and run under `TestClock`.
 * A missing `ping`, `version` or `info` fails with `EngineUnreachable`; a
 * missing `request` or `upgrade` with `EngineBadAnswer` (the test client
 * does not serve it).
 *
 * @since 0.2.0
 * @category models
 */
export interface TestAnswers {
  readonly ping?: Effect.Effect<PingAnswer, EngineError> | undefined
  readonly version?: Effect.Effect<VersionAnswer, EngineError> | undefined
  readonly info?: Effect.Effect<InfoAnswer, EngineError> | undefined
  /** Any other call; its answer is decoded with the caller's schema, if any. */
  readonly request?:
    | ((method: Method, path: string, body: unknown) => Effect.Effect<unknown, EngineError>)
    | undefined
  readonly upgrade?:
    | ((path: string, body: unknown) => Effect.Effect<UpgradedConnection, EngineError, Scope.Scope>)
    | undefined
  /** A streamed call's lines (`lines`). */
  readonly lines?:
    | ((method: Method, path: string, body: unknown) => Stream.Stream<string, EngineError>)
    | undefined
}

/**
 * A client of `socket` that answers with `answers`, without any socket.
 *
 * @since 0.2.0
 * @category constructors
 */
export const fromAnswers = (socket: string, answers: TestAnswers): DockerEngineClient => {
  const unreachable = (path: string) =>
    new EngineUnreachable({
      socket,
      code: "ECONNREFUSED",
      reason: `the test client has no answer for GET ${path}`
    })
  const notServed = (method: Method, path: string) =>
    new EngineBadAnswer({
      socket,
      path,
      reason: `the test client does not serve ${method} ${path}`
    })
  const request = (
    method: Method,
    path: string,
    options: { readonly body?: unknown; readonly schema?: Schema.Schema<unknown, unknown> } = {}
  ): Effect.Effect<unknown, EngineError> => {
    if (answers.request === undefined) return Effect.fail(notServed(method, path))
    const answered = answers.request(method, path, options.body)
    const schema = options.schema
    if (schema === undefined) return Effect.asVoid(answered)
    return Effect.flatMap(answered, (answer) =>
      Effect.mapError(
        Schema.decodeUnknown(schema, { onExcessProperty: "ignore" })(answer),
        (error) => new EngineBadAnswer({ socket, path, reason: error.message })
      )
    )
  }
  return {
    socket,
    ping: answers.ping ?? Effect.fail(unreachable("/_ping")),
    version: answers.version ?? Effect.fail(unreachable("/version")),
    info: answers.info ?? Effect.fail(unreachable("/info")),
    request: request as DockerEngineClient["request"],
    lines: (method, path, options = {}) =>
      answers.lines === undefined
        ? Stream.fail(notServed(method, path))
        : answers.lines(method, path, options.body),
    upgrade: (path, body) =>
      answers.upgrade === undefined
        ? Effect.fail(notServed("POST", path))
        : answers.upgrade(path, body)
  }
}

/**
 * A `DockerEngine` that answers with `answers` (see {@link TestAnswers}),
 * at `socket` (a name for messages; nothing is opened there).
 *
 * @since 0.2.0
 * @category layers
 */
export const layerTest = (
  answers: TestAnswers = {},
  socket = "/test/docker.sock"
): Layer.Layer<DockerEngine> => Layer.succeed(DockerEngine, fromAnswers(socket, answers))

/**
 * The `DockerEngineConnector` that connects for real ({@link make}).
 *
 * @since 0.2.0
 * @category layers
 */
export const layerConnector: Layer.Layer<DockerEngineConnector> = Layer.succeed(
  DockerEngineConnector,
  { connect: (socket) => make(socket) }
)

/**
 * A `DockerEngineConnector` whose clients answer with `answersFor(socket)`.
 *
 * @since 0.2.0
 * @category layers
 */
export const layerConnectorTest = (
  answersFor: (socket: string) => TestAnswers
): Layer.Layer<DockerEngineConnector> =>
  Layer.succeed(DockerEngineConnector, {
    connect: (socket) => Effect.sync(() => fromAnswers(socket, answersFor(socket)))
  })

/** The version in a `Server: Docker/20.10.24+dfsg1 (linux)` header. */
const engineVersion = (server: string | undefined): string | undefined =>
  server === undefined ? undefined : /^Docker\/(\S+)/.exec(server)?.[1]

const describe = (error: unknown): string =>
  error instanceof Error ? error.message : typeof error === "string" ? error : String(error)

/** The Engine's `{"message": …}` error body, or the raw text. */
const errorText = (text: string): string => {
  try {
    const message = (JSON.parse(text) as { message?: unknown }).message
    if (typeof message === "string") return message
  } catch {
    // not JSON: keep the text
  }
  return text.trim().slice(0, 200)
}

const connectionError = (
  socket: string,
  path: string,
  cause: unknown,
  message: string
): EngineError => {
  const code = (cause as { code?: unknown } | undefined)?.code
  return typeof code === "string" && NOT_LISTENING.has(code)
    ? new EngineUnreachable({ socket, code, reason: message })
    : new EngineBadAnswer({
        socket,
        path,
        reason: typeof code === "string" ? `${code}: ${message}` : message
      })
}

/** The lines of a streamed answer; see `DockerEngineClient.lines`. */
const streamLines = (
  socket: string,
  method: Method,
  path: string,
  body: unknown
): Stream.Stream<string, EngineError> =>
  Stream.async<string, EngineError>((emit) => {
    const payload = body === undefined ? undefined : JSON.stringify(body)
    const request = Http.request({
      socketPath: socket,
      // A connection of its own: a long answer must not hold a kept-alive one.
      agent: false,
      method,
      path,
      headers:
        payload === undefined
          ? {}
          : { "Content-Type": "application/json", "Content-Length": Buffer.byteLength(payload) }
    })
    request.on("response", (response) => {
      response.setEncoding("utf8")
      const status = response.statusCode ?? 0
      if (status < 200 || status >= 300) {
        let text = ""
        response.on("data", (chunk: string) => {
          if (text.length < MAX_ANSWER_BYTES) text += chunk
        })
        response.on(
          "end",
          () =>
            void emit.fail(
              new EngineBadAnswer({
                socket,
                path,
                status,
                reason: `HTTP ${status} ${errorText(text)}`
              })
            )
        )
        return
      }
      let rest = ""
      response.on("data", (chunk: string) => {
        const parts = (rest + chunk).split("\n")
        rest = parts.pop() ?? ""
        const complete = parts.filter((line) => line.trim().length > 0)
        if (complete.length > 0) void emit.chunk(Chunk.unsafeFromArray(complete))
      })
      response.on("end", () => {
        if (rest.trim().length > 0) void emit.single(rest)
        void emit.end()
      })
      response.on(
        "error",
        (error) => void emit.fail(connectionError(socket, path, error, error.message))
      )
    })
    request.on(
      "error",
      (error) => void emit.fail(connectionError(socket, path, error, error.message))
    )
    request.end(payload)
    return Effect.sync(() => request.destroy())
  })

const upgrade = (
  socket: string,
  path: string,
  body: unknown
): Effect.Effect<UpgradedConnection, EngineError, Scope.Scope> =>
  Effect.acquireRelease(
    Effect.async<UpgradedConnection, EngineError>((resume) => {
      const payload = JSON.stringify(body)
      const request = Http.request({
        socketPath: socket,
        method: "POST",
        path,
        headers: {
          "Content-Type": "application/json",
          "Content-Length": Buffer.byteLength(payload),
          Connection: "Upgrade",
          Upgrade: "tcp"
        }
      })
      request.on("upgrade", (_response, connection, head) => {
        // Errors after the upgrade surface on the reader; never crash here.
        connection.on("error", () => {})
        resume(Effect.succeed({ socket: connection, head }))
      })
      request.on("response", (response) => {
        let text = ""
        response.setEncoding("utf8")
        response.on("data", (chunk: string) => (text += chunk))
        response.on("end", () =>
          resume(
            Effect.fail(
              new EngineBadAnswer({
                socket,
                path,
                status: response.statusCode ?? 0,
                reason:
                  response.statusCode === 101
                    ? "switched protocols without an upgrade"
                    : `HTTP ${response.statusCode} ${errorText(text)}`
              })
            )
          )
        )
      })
      request.on("error", (error) =>
        resume(Effect.fail(connectionError(socket, path, error, error.message)))
      )
      request.end(payload)
      return Effect.sync(() => request.destroy())
    }).pipe(Effect.withSpan("DockerEngine.upgrade", { attributes: { socket, path } })),
    (connection) => Effect.sync(() => connection.socket.destroy())
  )
