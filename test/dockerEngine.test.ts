/**
 * The Engine client's transport against a plain HTTP server on a unix
 * socket (no dockerd): answers read from the Engine's headers, one
 * kept-alive connection for requests in turn, an interrupted request that
 * destroys its connection, a missing socket as `EngineUnreachable`.
 */
import { mkdtempSync, rmSync } from "node:fs"
import * as Http from "node:http"
import type * as Net from "node:net"
import * as Os from "node:os"
import * as Path from "node:path"
import { describe, expect, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import * as Schema from "effect/Schema"
import * as DockerEngine from "../src/DockerEngine.js"

/** What the server saw: its connections and the requests it holds unanswered. */
interface Server {
  readonly socket: string
  readonly connections: Array<Net.Socket>
  /** Resolves with the next request to `/held`, which is never answered. */
  readonly nextHeld: () => Promise<Net.Socket>
}

/** An HTTP server at a unix socket in a temp dir, closed with the scope. */
const serve = Effect.acquireRelease(
  Effect.async<{ server: Http.Server; dir: string; state: Server }>((resume) => {
    const dir = mkdtempSync(Path.join(Os.tmpdir(), "sandbox-docker-engine-"))
    const socket = Path.join(dir, "docker.sock")
    const connections: Array<Net.Socket> = []
    const waiting: Array<(socket: Net.Socket) => void> = []
    const server = Http.createServer((request, response) => {
      if (request.url === "/_ping") {
        response.setHeader("Api-Version", "1.50")
        response.setHeader("Server", "Docker/28.2.2 (linux)")
        response.end("OK")
      } else if (request.url === "/garbage") {
        response.setHeader("Content-Type", "application/json")
        response.end("{ not json")
      } else if (request.url === "/held") {
        waiting.shift()?.(request.socket)
      } else {
        response.statusCode = 404
        response.end(JSON.stringify({ message: `page not found: ${request.url}` }))
      }
    })
    server.on("connection", (connection) => connections.push(connection))
    server.listen(socket, () =>
      resume(
        Effect.succeed({
          server,
          dir,
          state: {
            socket,
            connections,
            nextHeld: () => new Promise<Net.Socket>((resolve) => waiting.push(resolve))
          }
        })
      )
    )
  }),
  ({ dir, server }) =>
    Effect.async<void>((resume) => {
      server.closeAllConnections()
      server.close(() => {
        rmSync(dir, { recursive: true, force: true })
        resume(Effect.void)
      })
    })
).pipe(Effect.map(({ state }) => state))

describe("DockerEngine over a unix socket", () => {
  it.scopedLive("reads a ping's headers; requests in turn share one kept-alive connection", () =>
    Effect.gen(function* () {
      const server = yield* serve
      const client = yield* DockerEngine.make(server.socket)
      const first = yield* client.ping
      expect(first).toStrictEqual(
        new DockerEngine.PingAnswer({ apiVersion: "1.50", serverVersion: "28.2.2" })
      )
      yield* client.ping
      const missing = yield* Effect.flip(client.request("GET", "/nothing"))
      expect(missing).toMatchObject({
        _tag: "EngineBadAnswer",
        status: 404,
        reason: "HTTP 404 page not found: /nothing"
      })
      expect(server.connections.length).toBe(1)
    })
  )

  it.scopedLive("an interrupted request destroys its connection; the next one opens another", () =>
    Effect.gen(function* () {
      const server = yield* serve
      const client = yield* DockerEngine.make(server.socket)
      const held = Effect.promise(() => server.nextHeld())
      const request = yield* Effect.fork(client.request("GET", "/held"))
      const connection = yield* held
      const closed = Effect.async<void>((resume) => {
        if (connection.closed) resume(Effect.void)
        else connection.once("close", () => resume(Effect.void))
      })
      yield* Fiber.interrupt(request)
      yield* closed
      yield* client.ping
      expect(server.connections.length).toBe(2)
    })
  )

  it.scopedLive("as a layer: the service answers, and its connections close with the layer", () =>
    Effect.gen(function* () {
      const server = yield* serve
      const answer = yield* Effect.flatMap(DockerEngine.DockerEngine, (engine) => engine.ping).pipe(
        Effect.provide(DockerEngine.layer(server.socket))
      )
      expect(answer.apiVersion).toBe("1.50")
      const connection = server.connections[0]!
      yield* Effect.async<void>((resume) => {
        if (connection.closed) resume(Effect.void)
        else connection.once("close", () => resume(Effect.void))
      })
    })
  )

  it.scopedLive("no socket there is EngineUnreachable, naming the socket and the errno", () =>
    Effect.gen(function* () {
      const client = yield* DockerEngine.make("/nonexistent-sandbox-docker/docker.sock")
      const error = yield* Effect.flip(client.info)
      expect(error).toMatchObject({
        _tag: "EngineUnreachable",
        socket: "/nonexistent-sandbox-docker/docker.sock",
        code: "ENOENT",
        reason: expect.any(String)
      })
    })
  )

  it.scopedLive(
    "an error status, or an answer that does not decode, is EngineBadAnswer with the path (and the status)",
    () =>
      Effect.gen(function* () {
        const server = yield* serve
        const client = yield* DockerEngine.make(server.socket)
        const status = yield* Effect.flip(client.info)
        expect(status).toMatchObject({
          _tag: "EngineBadAnswer",
          socket: server.socket,
          path: "/info",
          status: 404,
          reason: expect.stringContaining("page not found: /info")
        })
        const garbage = yield* Effect.flip(
          client.request("GET", "/garbage", { schema: Schema.Struct({ Id: Schema.String }) })
        )
        expect(garbage).toMatchObject({
          _tag: "EngineBadAnswer",
          socket: server.socket,
          path: "/garbage"
        })
        expect(garbage).not.toHaveProperty("status")
      })
  )
})
