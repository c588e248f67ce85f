/**
 * A small Docker Engine API client over a unix socket: `GET /_ping`,
 * `GET /version`, `GET /info`, each answer decoded with Schema; a generic
 * JSON `request` for the rest of the API, and `upgrade` for the endpoints that
 * hijack the connection (exec and attach streams).
 *
 * @since 0.1.0
 */
import * as Http from "node:http"
import type * as Net from "node:net"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as ParseResult from "effect/ParseResult"
import * as Schema from "effect/Schema"
import type * as Scope from "effect/Scope"
import { stackless } from "./internal/stackless.js"

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

/**
 * A client for one Engine socket.
 *
 * @since 0.1.0
 * @category models
 */
export interface DockerEngineClient {
  readonly socket: string
  readonly ping: Effect.Effect<PingAnswer, EngineError>
  readonly version: Effect.Effect<VersionAnswer, EngineError>
  readonly info: Effect.Effect<InfoAnswer, EngineError>
  /**
   * `GET /_ping` as plain callbacks: `done` is called once, unless the
   * returned function cancels the request first. For loops that poll many
   * daemons from callbacks (readiness and liveness checks); `ping` is the
   * same request as an Effect.
   */
  readonly unsafePing: (
    done: (result: Either.Either<PingAnswer, EngineError>) => void
  ) => () => void
  /** `GET /info` as plain callbacks, like `unsafePing`. */
  readonly unsafeInfo: (
    done: (result: Either.Either<InfoAnswer, EngineError>) => void
  ) => () => void
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
   * `POST path` with a JSON body, asking the Engine to upgrade the connection
   * (`Upgrade: tcp`), as `docker exec` and `docker attach` do. The connection
   * is closed when the scope closes.
   */
  readonly upgrade: (
    path: string,
    body: unknown
  ) => Effect.Effect<UpgradedConnection, EngineError, Scope.Scope>
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
 * in loops, for many daemons at once, and this costs a fraction of the CPU of
 * a general-purpose HTTP client (see bench/micro.ts). An interrupted request
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

    /** One exchange, as callbacks: `done` once with the answer or the error. */
    const exchangeNow = (
      method: Method,
      path: string,
      payload: string | undefined,
      done: (result: Either.Either<RawAnswer, EngineError>) => void
    ): (() => void) => {
      const idempotent = method === "GET" || method === "HEAD" || method === "DELETE"
      let settled = false
      const settle = (result: Either.Either<RawAnswer, EngineError>) => {
        if (settled) return
        settled = true
        done(result)
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
      return () => {
        settled = true
        current.destroy()
      }
    }

    const exchange = (method: Method, path: string, payload: string | undefined) =>
      Effect.async<RawAnswer, EngineError>((resume) => {
        const cancel = exchangeNow(method, path, payload, (result) => resume(result))
        return Effect.sync(cancel)
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
            new PingAnswer(
              { apiVersion: answer.apiVersion, serverVersion: engineVersion(answer.server) },
              true
            )
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
    const readInfo = readJson("/info", InfoAnswer)

    /** A GET as callbacks: the status checked, the answer read. */
    const getNow =
      <A>(path: string, read: (answer: RawAnswer) => Either.Either<A, EngineError>) =>
      (done: (result: Either.Either<A, EngineError>) => void): (() => void) =>
        exchangeNow("GET", path, undefined, (result) =>
          done(Either.flatMap(Either.flatMap(result, statusOk(path)), read))
        )

    // The effects are made when asked for: a client per daemon, and one
    // process watching a thousand daemons, which use the callback forms.
    return {
      socket,
      get ping() {
        return send("GET", "/_ping", undefined, readPing)
      },
      get version() {
        return send("GET", "/version", undefined, readJson("/version", VersionAnswer))
      },
      get info() {
        return send("GET", "/info", undefined, readInfo)
      },
      unsafePing: getNow("/_ping", readPing),
      unsafeInfo: getNow("/info", readInfo),
      request: request as DockerEngineClient["request"],
      upgrade: (path, body) => upgrade(socket, path, body)
    }
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
  // Made in a socket's callback, as often as daemons are polled: no stack.
  return stackless(() =>
    typeof code === "string" && NOT_LISTENING.has(code)
      ? new EngineUnreachable({ socket, code, reason: message }, true)
      : new EngineBadAnswer(
          { socket, path, reason: typeof code === "string" ? `${code}: ${message}` : message },
          true
        )
  )
}

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
