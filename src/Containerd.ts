/**
 * A minimal containerd client over its gRPC unix socket: the version
 * service (`containerd.services.version.v1.Version/Version`), which answers
 * only when containerd itself serves. dockerd's `/info` asks containerd the
 * same question behind work of its own (it runs `runc` and `docker-init` to
 * read their versions); asking containerd directly proves the same thing in
 * one round trip. As a service: the `Containerd` Tag with `layer(address)`
 * and `layerTest(answers)`, and the `ContainerdConnector` for addresses
 * known only at run time.
 *
 * @since 0.1.0
 */
import * as Http2 from "node:http2"
import * as Net from "node:net"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Layer from "effect/Layer"
import * as ParseResult from "effect/ParseResult"
import * as Schema from "effect/Schema"
import type * as Scope from "effect/Scope"

/**
 * The containerd client of one socket, as a service.
 *
 * @since 0.2.0
 * @category tags
 */
export class Containerd extends Context.Tag("sandbox-docker/Containerd")<
  Containerd,
  ContainerdClient
>() {}

/**
 * A client for one containerd socket.
 *
 * @since 0.1.0
 * @category models
 */
export interface ContainerdClient {
  /** The socket's path. */
  readonly address: string
  /** Asks the version service. */
  readonly version: Effect.Effect<ContainerdVersion, ContainerdError>
  /**
   * Opens the connection ahead of the next call if containerd accepts
   * already (nothing to do when it is open): true once connected, false
   * when nobody accepts yet. A readiness check repeats it while it waits
   * for dockerd, so that asking containerd afterwards costs one round trip.
   */
  readonly warm: Effect.Effect<boolean>
}

/**
 * Opens containerd clients to addresses known only at run time (worked
 * out from a daemon's settings): `layerConnector` connects for real,
 * `layerConnectorTest` hands out test clients.
 *
 * @since 0.2.0
 * @category tags
 */
export class ContainerdConnector extends Context.Tag("sandbox-docker/ContainerdConnector")<
  ContainerdConnector,
  {
    /** A client of `address`, its connection closed with the scope. */
    readonly connect: (address: string) => Effect.Effect<ContainerdClient, never, Scope.Scope>
  }
>() {}

/**
 * The answer of containerd's version service.
 *
 * @since 0.1.0
 * @category models
 */
export class ContainerdVersion extends Schema.Class<ContainerdVersion>("ContainerdVersion")({
  version: Schema.String,
  revision: Schema.String
}) {}

/**
 * Nobody serves gRPC at the address: no socket there, or nobody accepts
 * on it (`ENOENT`, `ECONNREFUSED`, a connection reset).
 *
 * @since 0.1.0
 * @category errors
 */
export class ContainerdUnreachable extends Schema.TaggedError<ContainerdUnreachable>()(
  "ContainerdUnreachable",
  { address: Schema.String, code: Schema.String, reason: Schema.String }
) {
  override get message(): string {
    return `cannot reach containerd at ${this.address}: ${this.code} (${this.reason})`
  }
}

/**
 * containerd answered, but not with a version: a gRPC error status, or an
 * answer that does not decode.
 *
 * @since 0.1.0
 * @category errors
 */
export class ContainerdBadAnswer extends Schema.TaggedError<ContainerdBadAnswer>()(
  "ContainerdBadAnswer",
  {
    address: Schema.String,
    reason: Schema.String,
    /** The gRPC status code, when containerd answered with one other than 0. */
    grpcStatus: Schema.optional(Schema.Number)
  }
) {
  override get message(): string {
    return `containerd at ${this.address} answered the version service badly: ${this.reason}`
  }
}

/**
 * Why a call to containerd failed: nobody serves there, or a bad answer.
 *
 * @since 0.1.0
 * @category errors
 */
export type ContainerdError = ContainerdUnreachable | ContainerdBadAnswer

/** The gRPC method asked. */
const VERSION_PATH = "/containerd.services.version.v1.Version/Version"

/** An empty request message in gRPC's framing: not compressed, length 0. */
const EMPTY_MESSAGE = new Uint8Array(5)

/** Answers larger than this are refused: a version answer is ~50 bytes. */
const MAX_ANSWER_BYTES = 64 * 1024

/** Error codes meaning "nobody is listening there". */
const NOT_LISTENING = new Set(["ENOENT", "ECONNREFUSED", "ECONNRESET", "EPIPE"])

/**
 * Creates a client for the containerd listening on the unix socket
 * `address` (a `unix://` prefix is accepted). One HTTP/2 connection is
 * opened at the first call and kept for the next ones (a liveness check
 * every few seconds does not connect each time); it is dropped when it
 * fails and closed when the scope closes. A cancelled call (a probe's
 * timeout) cancels its stream.
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = (address: string): Effect.Effect<ContainerdClient, never, Scope.Scope> =>
  Effect.map(
    Effect.acquireRelease(
      Effect.sync(() => new Connection(address.replace(/^unix:\/\//, ""))),
      (connection) => Effect.sync(() => connection.close())
    ),
    (connection) =>
      Containerd.of({
        address: connection.path,
        version: Effect.async<ContainerdVersion, ContainerdError>((resume) =>
          Effect.sync(connection.version(resume))
        ).pipe(
          Effect.withSpan("Containerd.version", {
            attributes: { address: connection.path },
            captureStackTrace: false
          })
        ),
        warm: Effect.async<boolean>((resume) =>
          Effect.sync(connection.warm((connected) => resume(Effect.succeed(connected))))
        )
      })
  )

/**
 * The client of `address` as the `Containerd` service, its connection
 * closed with the layer.
 *
 * @since 0.2.0
 * @category layers
 */
export const layer = (address: string): Layer.Layer<Containerd> =>
  Layer.scoped(Containerd, make(address))

/**
 * What a test client answers. Each answer is an Effect run at every call,
 * so it can change with time (`Clock`, a `Ref`) and run under `TestClock`.
 * A missing `version` fails with `ContainerdUnreachable`; a missing `warm`
 * is true when `version` reaches containerd (it answers, even badly).
 *
 * @since 0.2.0
 * @category models
 */
export interface TestAnswers {
  readonly version?: Effect.Effect<ContainerdVersion, ContainerdError> | undefined
  readonly warm?: Effect.Effect<boolean> | undefined
}

/**
 * A client of `address` that answers with `answers`, without any socket.
 *
 * @since 0.2.0
 * @category constructors
 */
export const fromAnswers = (address: string, answers: TestAnswers): ContainerdClient => {
  const version =
    answers.version ??
    Effect.fail(
      new ContainerdUnreachable({
        address,
        code: "ECONNREFUSED",
        reason: "the test client has no answer for the version service"
      })
    )
  return {
    address,
    version,
    warm:
      answers.warm ??
      Effect.match(version, {
        onFailure: (error) => error._tag !== "ContainerdUnreachable",
        onSuccess: () => true
      })
  }
}

/**
 * A `Containerd` that answers with `answers` (see {@link TestAnswers}), at
 * `address` (a name for messages; nothing is opened there).
 *
 * @since 0.2.0
 * @category layers
 */
export const layerTest = (
  answers: TestAnswers = {},
  address = "/test/containerd.sock"
): Layer.Layer<Containerd> => Layer.succeed(Containerd, fromAnswers(address, answers))

/**
 * The `ContainerdConnector` that connects for real ({@link make}).
 *
 * @since 0.2.0
 * @category layers
 */
export const layerConnector: Layer.Layer<ContainerdConnector> = Layer.succeed(ContainerdConnector, {
  connect: (address) => make(address)
})

/**
 * A `ContainerdConnector` whose clients answer with `answersFor(address)`.
 * The address is the one asked for, a `unix://` prefix removed.
 *
 * @since 0.2.0
 * @category layers
 */
export const layerConnectorTest = (
  answersFor: (address: string) => TestAnswers
): Layer.Layer<ContainerdConnector> =>
  Layer.succeed(ContainerdConnector, {
    connect: (address) =>
      Effect.sync(() => {
        const path = address.replace(/^unix:\/\//, "")
        return fromAnswers(path, answersFor(path))
      })
  })

/** The session, made when first needed and again after it fails. */
class Connection {
  private session: Http2.ClientHttp2Session | undefined
  /** Calls in flight per session: a session keeps the process alive only while it has some. */
  private readonly active = new WeakMap<Http2.ClientHttp2Session, number>()
  private closed = false

  constructor(readonly path: string) {}

  /**
   * Connects ahead of the next call when containerd accepts already, so
   * that call does not wait for the connection. `done(false)` when nobody
   * accepts (yet), `done(true)` once there is a session; the returned
   * function gives up.
   */
  warm(done: (connected: boolean) => void): () => void {
    if (this.closed) return () => {}
    if (this.session !== undefined && !this.session.destroyed && !this.session.closed) {
      done(true)
      return () => {}
    }
    let over = false
    const socket = Net.connect(this.path)
    socket.once("connect", () => {
      if (over) return
      over = true
      socket.removeAllListeners("error")
      if (this.closed || (this.session !== undefined && !this.session.destroyed)) {
        socket.destroy()
      } else {
        // Idle until a call: it must not keep the process alive.
        this.adopt(socket).unref()
      }
      done(true)
    })
    socket.once("error", () => {
      if (over) return
      over = true
      socket.destroy()
      done(false)
    })
    return () => {
      if (over) return
      over = true
      socket.destroy()
    }
  }

  close(): void {
    this.closed = true
    this.session?.destroy()
    this.session = undefined
  }

  version(done: (result: Either.Either<ContainerdVersion, ContainerdError>) => void): () => void {
    if (this.closed) {
      done(Either.left(this.unreachable("ECLOSED", "the client's scope is closed")))
      return () => {}
    }
    const session = this.current()
    let settled = false
    const settle = (result: Either.Either<ContainerdVersion, ContainerdError>) => {
      if (settled) return
      settled = true
      done(result)
    }
    const chunks: Array<Buffer> = []
    let size = 0
    let headers: Http2.IncomingHttpHeaders | undefined
    let trailers: Http2.IncomingHttpHeaders | undefined
    let streamError: (Error & { code?: string }) | undefined
    let stream: Http2.ClientHttp2Stream
    try {
      stream = session.request({
        ":method": "POST",
        ":path": VERSION_PATH,
        "content-type": "application/grpc",
        te: "trailers"
      })
    } catch (error) {
      this.drop(session)
      settle(Either.left(this.unreachable("ESESSION", describe(error))))
      return () => {}
    }
    const inFlight = this.active.get(session) ?? 0
    this.active.set(session, inFlight + 1)
    if (inFlight === 0) session.ref()
    stream.on("response", (received) => (headers = received))
    stream.on("trailers", (received) => (trailers = received))
    stream.on("data", (chunk: Buffer) => {
      size += chunk.length
      if (size > MAX_ANSWER_BYTES) {
        settle(Either.left(this.bad(`the answer is larger than ${MAX_ANSWER_BYTES} bytes`)))
        stream.close(Http2.constants.NGHTTP2_CANCEL)
      } else chunks.push(chunk)
    })
    stream.on("error", (error: Error & { code?: string }) => (streamError = error))
    stream.on("close", () => {
      const left = (this.active.get(session) ?? 1) - 1
      this.active.set(session, left)
      if (left === 0 && !session.destroyed) session.unref()
      if (settled) return
      // A session that fails takes its streams down with it, its error as
      // their cause.
      const cause = rootCause(streamError)
      if (headers === undefined) {
        const code = cause?.code ?? "ECLOSED"
        settle(
          Either.left(
            NOT_LISTENING.has(code) || cause === undefined
              ? this.unreachable(code, cause?.message ?? "the connection closed before an answer")
              : this.bad(cause.message)
          )
        )
      } else settle(this.read(headers, trailers, Buffer.concat(chunks)))
    })
    stream.end(EMPTY_MESSAGE)
    return () => {
      if (settled) return
      settled = true
      stream.close(Http2.constants.NGHTTP2_CANCEL)
    }
  }

  /**
   * The open session, or a new one. Like an idle kept-alive HTTP/1
   * connection, an idle session does not keep the process alive.
   */
  private current(): Http2.ClientHttp2Session {
    if (this.session !== undefined && !this.session.destroyed && !this.session.closed) {
      return this.session
    }
    return this.adopt(Net.connect(this.path))
  }

  /** A session on `socket` (connecting or connected), made the current one. */
  private adopt(socket: Net.Socket): Http2.ClientHttp2Session {
    const session = Http2.connect("http://localhost", { createConnection: () => socket })
    session.on("error", () => this.drop(session))
    session.on("goaway", () => this.drop(session))
    session.on("close", () => this.drop(session))
    this.session = session
    return session
  }

  private drop(session: Http2.ClientHttp2Session): void {
    if (this.session === session) this.session = undefined
    if (!session.destroyed) session.destroy()
  }

  /** The answer: gRPC status 0 and a message that decodes. */
  private read(
    headers: Http2.IncomingHttpHeaders,
    trailers: Http2.IncomingHttpHeaders | undefined,
    body: Buffer
  ): Either.Either<ContainerdVersion, ContainerdError> {
    const status = headers[":status"]
    if (Number(status) !== 200) return Either.left(this.bad(`HTTP/2 status ${String(status)}`))
    // A "trailers-only" answer (an error) carries its status in the headers.
    const grpcStatus = Number(trailers?.["grpc-status"] ?? headers["grpc-status"])
    if (grpcStatus !== 0) {
      const message = trailers?.["grpc-message"] ?? headers["grpc-message"]
      return Either.left(
        new ContainerdBadAnswer({
          address: this.path,
          reason: `gRPC status ${grpcStatus}${typeof message === "string" ? `: ${decodeURIComponent(message)}` : ""}`,
          ...(Number.isNaN(grpcStatus) ? {} : { grpcStatus })
        })
      )
    }
    const fields = readMessage(body)
    if (typeof fields === "string") return Either.left(this.bad(fields))
    return Either.mapLeft(decodeVersion(fields), (error) =>
      this.bad(ParseResult.TreeFormatter.formatErrorSync(error))
    )
  }

  private unreachable(code: string, reason: string): ContainerdUnreachable {
    return new ContainerdUnreachable({ address: this.path, code, reason })
  }

  private bad(reason: string): ContainerdBadAnswer {
    return new ContainerdBadAnswer({ address: this.path, reason })
  }
}

const decodeVersion = Schema.decodeUnknownEither(ContainerdVersion)

type CodedError = Error & { code?: string; cause?: unknown }

/**
 * The error behind a cancelled stream: when the connection cannot be made,
 * the stream fails with `ERR_HTTP2_STREAM_CANCEL` caused by the socket's
 * `ENOENT` or `ECONNREFUSED`, before the session reports it.
 */
const rootCause = (error: CodedError | undefined): CodedError | undefined =>
  error?.code === "ERR_HTTP2_STREAM_CANCEL" && error.cause instanceof Error
    ? (error.cause as CodedError)
    : error

const describe = (error: unknown): string =>
  error instanceof Error ? error.message : String(error)

/**
 * The version answer's fields from one gRPC-framed protobuf message
 * (`string version = 1; string revision = 2;`, others skipped), or why it
 * cannot be read.
 *
 * @internal
 */
export const readMessage = (body: Uint8Array): Record<string, unknown> | string => {
  if (body.length < 5) return `a message of ${body.length} bytes, shorter than gRPC's 5-byte prefix`
  if (body[0] !== 0) return "a compressed message, which was not asked for"
  const length = new DataView(body.buffer, body.byteOffset, body.byteLength).getUint32(1)
  if (body.length !== 5 + length) {
    return `a message of ${body.length - 5} bytes where its prefix says ${length}`
  }
  const fields: Record<string, unknown> = {}
  const names: Record<number, string> = { 1: "version", 2: "revision" }
  let at = 5
  const varint = (): number | undefined => {
    let value = 0
    for (let shift = 0; shift < 35; shift += 7) {
      if (at >= body.length) return undefined
      const byte = body[at++]!
      value += (byte & 0x7f) * 2 ** shift
      if ((byte & 0x80) === 0) return value
    }
    return undefined
  }
  const decoder = new TextDecoder("utf-8", { fatal: true })
  while (at < body.length) {
    const key = varint()
    if (key === undefined) return "a truncated field key"
    const field = Math.floor(key / 8)
    const wire = key % 8
    if (wire === 0) {
      if (varint() === undefined) return "a truncated number"
    } else if (wire === 1 || wire === 5) {
      at += wire === 1 ? 8 : 4
    } else if (wire === 2) {
      const size = varint()
      if (size === undefined || at + size > body.length) return "a truncated string"
      const name = names[field]
      if (name !== undefined) {
        try {
          fields[name] = decoder.decode(body.subarray(at, at + size))
        } catch {
          return `field ${field} is not UTF-8`
        }
      }
      at += size
    } else return `field ${field} has wire type ${wire}, which this reader does not know`
    if (at > body.length) return "a truncated field"
  }
  return fields
}
