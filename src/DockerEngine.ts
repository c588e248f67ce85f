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
// Module paths, not the packages' index: an index loads every module of the
// package (HTTP API, Swagger UI, workers…), some 45 MB of memory this client
// never uses.
import * as HttpClientError from "@effect/platform/HttpClientError"
import * as HttpClientRequest from "@effect/platform/HttpClientRequest"
import type * as HttpClientResponse from "@effect/platform/HttpClientResponse"
import * as NodeHttpClient from "@effect/platform-node/NodeHttpClient"
import { Effect, Schema, type Scope } from "effect"
import { Agent } from "undici"

/**
 * The answer to `GET /_ping`: the body `OK` and the API version header.
 *
 * @since 0.1.0
 * @category models
 */
export class PingAnswer extends Schema.Class<PingAnswer>("PingAnswer")({
  apiVersion: Schema.optional(Schema.String)
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
const NOT_LISTENING = new Set(["ENOENT", "ECONNREFUSED", "ECONNRESET", "EPIPE", "UND_ERR_SOCKET"])

const describe = (error: unknown): string =>
  error instanceof Error ? error.message : typeof error === "string" ? error : String(error)

const findCode = (cause: unknown): string | undefined => {
  for (let current = cause, depth = 0; current && depth < 6; depth++) {
    const code = (current as { code?: unknown }).code
    if (typeof code === "string") return code
    current = (current as { cause?: unknown }).cause
  }
  return undefined
}

/**
 * Creates a client for the Engine listening on the unix socket `socket`. The
 * connection pool is closed when the scope closes.
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = (socket: string): Effect.Effect<DockerEngineClient, never, Scope.Scope> =>
  Effect.gen(function* () {
    const agent = yield* Effect.acquireRelease(
      Effect.sync(() => new Agent({ connect: { socketPath: socket }, pipelining: 0 })),
      (agent) => Effect.promise(() => agent.destroy())
    )
    const client = NodeHttpClient.makeUndici(agent)

    const badAnswer = (path: string, reason: string) =>
      new EngineBadAnswer({ socket, path, reason })

    const send = <A>(
      method: Method,
      path: string,
      body: unknown,
      read: (response: HttpClientResponse.HttpClientResponse) => Effect.Effect<A, unknown>
    ): Effect.Effect<A, EngineError> => {
      const base = HttpClientRequest.make(method)(`http://localhost${path}`)
      const request = body === undefined ? base : HttpClientRequest.bodyUnsafeJson(base, body)
      return client.execute(request).pipe(
        Effect.flatMap((response) =>
          response.status >= 200 && response.status < 300
            ? Effect.mapError(read(response), (error) => badAnswer(path, describe(error)))
            : Effect.flatMap(
                Effect.orElseSucceed(response.text, () => ""),
                (text) =>
                  Effect.fail(
                    new EngineBadAnswer({
                      socket,
                      path,
                      status: response.status,
                      reason: `HTTP ${response.status} ${errorText(text)}`
                    })
                  )
              )
        ),
        Effect.scoped,
        Effect.catchIf(HttpClientError.isHttpClientError, (error) =>
          Effect.fail(connectionError(socket, path, error.cause, error.message))
        ),
        // No call-site stack trace: readiness and liveness probes send
        // requests in a loop, and it would be captured on every one.
        Effect.withSpan("DockerEngine.request", {
          attributes: { socket, method, path },
          captureStackTrace: false
        })
      )
    }

    const get = <A>(
      path: string,
      read: (response: HttpClientResponse.HttpClientResponse) => Effect.Effect<A, unknown>
    ) => send("GET", path, undefined, read)

    const decode =
      <A, I>(schema: Schema.Schema<A, I>) =>
      (response: HttpClientResponse.HttpClientResponse) =>
        Effect.flatMap(response.json, Schema.decodeUnknown(schema, { onExcessProperty: "ignore" }))

    const json = <A, I>(path: string, schema: Schema.Schema<A, I>) => get(path, decode(schema))

    const request = (
      method: Method,
      path: string,
      options: { readonly body?: unknown; readonly schema?: Schema.Schema<unknown, unknown> } = {}
    ): Effect.Effect<unknown, EngineError> =>
      send(
        method,
        path,
        options.body,
        options.schema === undefined ? () => Effect.void : decode(options.schema)
      )

    return {
      socket,
      ping: get("/_ping", (response) =>
        Effect.flatMap(response.text, (body) =>
          body.trim() === "OK"
            ? Effect.succeed(new PingAnswer({ apiVersion: response.headers["api-version"] }))
            : Effect.fail(`unexpected body ${JSON.stringify(body.slice(0, 100))}`)
        )
      ),
      version: json("/version", VersionAnswer),
      info: json("/info", InfoAnswer),
      request: request as DockerEngineClient["request"],
      upgrade: (path, body) => upgrade(socket, path, body)
    }
  })

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
  const code = findCode(cause)
  return code !== undefined && NOT_LISTENING.has(code)
    ? new EngineUnreachable({ socket, code, reason: message })
    : new EngineBadAnswer({
        socket,
        path,
        reason: code === undefined ? message : `${code}: ${message}`
      })
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
