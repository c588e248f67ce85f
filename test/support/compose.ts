/**
 * What the compose and volume tests do on either runtime
 * (test/sandbox.compose.real.test.ts on runc,
 * test/sandbox.compose.gvisor.real.test.ts on runsc): the helpers and the
 * test bodies they share.
 */
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import type * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import { expect } from "vitest"
import type * as Sandbox from "../../src/Sandbox.js"
import type * as SandboxDocker from "../../src/SandboxDocker.js"

/** Runs a shell script in the sandbox to its end: exit code and output lines. */
export const shell = (sandbox: Sandbox.Sandbox, script: string, stdin?: string) =>
  Effect.scoped(
    Effect.gen(function* () {
      const handle = yield* sandbox.exec(["sh", "-c", script], {
        tailLines: 200,
        ...(stdin === undefined ? {} : { stdin })
      })
      const status = yield* handle.awaitExit
      return { code: status._tag === "Exited" ? status.code : -1, lines: yield* handle.logTail }
    })
  )

/** stdout of a docker command in the sandbox, as lines. */
export const dockerLines = (
  command: Effect.Effect<SandboxDocker.DockerCommand, unknown, Scope.Scope>
) =>
  Effect.scoped(
    Effect.flatMap(command, (handle) =>
      Effect.map(handle.output, (output) =>
        output.stdout.split("\n").filter((line) => line.trim() !== "")
      )
    )
  )

/** The first line of a stream that contains `text`, and whether the process still ran then. */
export const firstLineWith = (command: SandboxDocker.DockerCommand, text: string) =>
  command.lines.pipe(
    Stream.filter((line) => line.includes(text)),
    Stream.mapEffect((line) =>
      Effect.map(command.process.status, (status) => ({ line, running: status._tag === "Running" }))
    ),
    Stream.runHead,
    Effect.map(Option.getOrThrow)
  )

/**
 * Two services and a named volume: `client` fetches `web`'s page, by its
 * service name on runc (the project's network), on localhost under runsc
 * (every service on the sandbox's network).
 */
const twoServices = (image: string, runtime: "runc" | "runsc") => `
services:
  web:
    image: ${image}
    command: ["sh", "-c", "mkdir -p /www && echo hello-from-web > /www/index.html && exec httpd -f -p 18081 -h /www"]
    volumes: ["data:/data"]
  client:
    image: ${image}
    command: ["sh", "-c", "until out=$$(wget -qO- http://${runtime === "runc" ? "web" : "127.0.0.1"}:18081/ 2>/dev/null); do sleep 0.2; done; echo \\"client got: $$out\\"; exec sleep 3600"]
volumes:
  data: {}
`

/**
 * The two-service project, up, answering, its logs followed live, listed,
 * and down with its volumes: nothing of it left. On runc it has a network
 * of its own; under runsc both services run with `network_mode: host` and
 * no network is made.
 */
export const twoServiceProject = (
  sandbox: Sandbox.Sandbox,
  image: string,
  runtime: "runc" | "runsc"
) =>
  Effect.gen(function* () {
    const compose = sandbox.docker.compose
    const project = { file: { text: twoServices(image, runtime) }, project: "demo" }

    const up = yield* Effect.scoped(
      Effect.flatMap(compose.up(project), (command) =>
        Effect.zip(Stream.runCollect(command.lines), command.wait)
      )
    )
    const upLines = [...up[0]]
    expect(upLines.some((line) => /Creating demo_web_1/.test(line))).toBe(true)
    expect(upLines.some((line) => /Creating demo_client_1/.test(line))).toBe(true)
    expect(upLines.some((line) => /Creating network "demo_default"/.test(line))).toBe(
      runtime === "runc"
    )

    // `client` prints what it got from `web`; the follow stream shows it while it runs.
    const seen = yield* Effect.scoped(
      Effect.flatMap(compose.logs({ ...project, follow: true, services: ["client"] }), (logs) =>
        firstLineWith(logs, "client got: hello-from-web")
      )
    )
    expect(seen.running).toBe(true)
    expect(seen.line).toMatch(/^client_1\s+\| client got: hello-from-web$/)

    const ps = yield* dockerLines(compose.ps(project))
    expect(ps.some((line) => /^demo_web_1\s.*\sUp/.test(line))).toBe(true)
    expect(ps.some((line) => /^demo_client_1\s.*\sUp/.test(line))).toBe(true)
    const modes = yield* shell(
      sandbox,
      "docker inspect --format '{{.HostConfig.NetworkMode}}' demo_web_1 demo_client_1"
    )
    expect(modes.lines).toEqual(
      runtime === "runc" ? ["demo_default", "demo_default"] : ["host", "host"]
    )
    const networks = yield* shell(sandbox, "docker network ls --format '{{.Name}}'")
    expect([...networks.lines].sort()).toEqual(
      runtime === "runc" ? ["demo_default", "host", "none"] : ["host", "none"]
    )
    const volumes = yield* sandbox.docker.volume.ls()
    expect(volumes.map((volume) => volume.Name)).toEqual(["demo_data"])

    yield* Effect.scoped(
      Effect.flatMap(compose.down({ ...project, volumes: true }), (down) => down.wait)
    )
    const after = yield* shell(
      sandbox,
      "docker ps --all --quiet; docker network ls --format '{{.Name}}'; docker volume ls --quiet"
    )
    expect(after.code).toBe(0)
    expect([...after.lines].sort()).toEqual(["host", "none"])
    // The compose text's temp directories went with their commands' scopes.
    const temps = yield* shell(sandbox, "ls /tmp | grep sandbox-docker-compose || true")
    expect(temps.lines).toEqual([])
  })

/**
 * A named volume: written by a container that is then removed, read by
 * another, listed and inspected, refused `rm` while a container holds it,
 * then removed, and gone.
 */
export const volumeLifecycle = (sandbox: Sandbox.Sandbox, image: string) =>
  Effect.gen(function* () {
    const volume = sandbox.docker.volume
    expect(yield* volume.create("keep-data", { labels: { purpose: "test" } })).toBe("keep-data")
    const runWith = (argv: ReadonlyArray<string>) =>
      Effect.scoped(
        Effect.flatMap(
          sandbox.docker.run(image, argv, { remove: true, volumes: ["keep-data:/data"] }),
          (container) => container.output
        )
      )
    expect((yield* runWith(["sh", "-c", "echo kept > /data/file"])).exitCode).toBe(0)
    // The container that wrote it is gone (--rm); the volume and its file are not.
    expect((yield* shell(sandbox, "docker ps --all --quiet")).lines).toEqual([])
    expect((yield* runWith(["cat", "/data/file"])).stdout.trim()).toBe("kept")
    expect(yield* volume.inspect("keep-data")).toMatchObject({
      Name: "keep-data",
      Driver: "local",
      Labels: { purpose: "test" }
    })
    expect((yield* volume.ls()).map((summary) => summary.Name)).toEqual(["keep-data"])

    // In use by a container (stopped, not removed): rm refuses.
    yield* Effect.scoped(
      Effect.flatMap(
        sandbox.docker.run(image, ["true"], { name: "holder", volumes: ["keep-data:/data"] }),
        (container) => container.wait
      )
    )
    expect(yield* Effect.flip(volume.rm("keep-data"))).toMatchObject({
      _tag: "VolumeInUse",
      volume: "keep-data"
    })
    yield* Effect.scoped(Effect.flatMap(sandbox.docker.rm("holder"), (rm) => rm.wait))

    yield* volume.rm("keep-data")
    expect(yield* volume.ls()).toEqual([])
    const gone = yield* Effect.flip(volume.inspect("keep-data"))
    expect(gone).toMatchObject({ _tag: "VolumeNotFound", volume: "keep-data" })
    expect(gone.message).toContain("volume ls lists them")
    expect(yield* Effect.flip(volume.rm("keep-data"))).toMatchObject({ _tag: "VolumeNotFound" })
  })
