/**
 * A small Docker Engine API client over a unix socket: `GET /_ping`,
 * `GET /version`, `GET /info`, each answer decoded with Schema.
 *
 * @since 0.1.0
 */
import { HttpClientError, HttpClientRequest, type HttpClientResponse } from "@effect/platform"
import { NodeHttpClient } from "@effect/platform-node"
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
  reason: Schema.String
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

    const get = <A>(
      path: string,
      read: (response: HttpClientResponse.HttpClientResponse) => Effect.Effect<A, unknown>
    ): Effect.Effect<A, EngineError> =>
      client.execute(HttpClientRequest.get(`http://localhost${path}`)).pipe(
        Effect.flatMap((response) =>
          response.status === 200
            ? Effect.mapError(read(response), (error) => badAnswer(path, describe(error)))
            : Effect.flatMap(
                Effect.orElseSucceed(response.text, () => ""),
                (body) =>
                  Effect.fail(
                    badAnswer(path, `HTTP ${response.status} ${body.trim().slice(0, 200)}`)
                  )
              )
        ),
        Effect.scoped,
        Effect.catchIf(HttpClientError.isHttpClientError, (error) => {
          const code = findCode(error.cause)
          return Effect.fail(
            code !== undefined && NOT_LISTENING.has(code)
              ? new EngineUnreachable({ socket, code, reason: error.message })
              : badAnswer(path, code === undefined ? error.message : `${code}: ${error.message}`)
          )
        }),
        Effect.withSpan("DockerEngine.get", { attributes: { socket, path } })
      )

    const json = <A, I>(path: string, schema: Schema.Schema<A, I>) =>
      get(path, (response) =>
        Effect.flatMap(response.json, Schema.decodeUnknown(schema, { onExcessProperty: "ignore" }))
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
      info: json("/info", InfoAnswer)
    }
  })
