/**
 * Compose, volumes, build logs and the login from the environment, in
 * Docker-enabled sandboxes on a real host engine, with images from a local
 * registry (scripts/seedScenario.ts's host environment: its own engine, in
 * its own network namespace, a registry on 127.0.0.1:5000 there).
 */
import { describe, expect, layer } from "@effect/vitest"
import * as Context from "effect/Context"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Logger from "effect/Logger"
import * as LogLevel from "effect/LogLevel"
import type * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import * as Dockerd from "../src/Dockerd.js"
import * as Sandbox from "../src/Sandbox.js"
import type * as SandboxDocker from "../src/SandboxDocker.js"
import { type HostEnvironment, hostEnvironment, SANDBOX_IMAGE } from "../scripts/seedScenario.js"
import { authRegistry } from "./support/authRegistry.js"
import {
  dockerLines,
  firstLineWith,
  shell,
  twoServiceProject,
  volumeLifecycle
} from "./support/compose.js"
import { hasDockerd } from "./support/isolated.js"

const real = hasDockerd()

class Host extends Context.Tag("test/ComposeHost")<Host, HostEnvironment>() {}

const HostLive = Layer.scoped(Host, hostEnvironment()).pipe(Layer.provideMerge(Dockerd.layerNode))

// The first run on a fresh machine builds the Debian image with debootstrap.
const TIMEOUT = Duration.toMillis(Duration.minutes(10))

/** A Docker-enabled sandbox on the engine's network, where the registry listens. */
const dockerSandbox = (host: HostEnvironment, env: Record<string, string> = {}) =>
  Sandbox.create(
    { image: SANDBOX_IMAGE, dockerEnabled: true, network: "host", env },
    { engineSocket: host.socket, stopGrace: "3 seconds" }
  )

describe.skipIf(!real)("compose, volumes, build and login in a sandbox (runc)", () => {
  layer(HostLive, { timeout: TIMEOUT, excludeTestServices: true })((it) => {
    it.scoped(
      "a two-service compose file from the local registry comes up, one service reaches the other, its logs stream live, and down --volumes leaves no container, network or volume",
      () =>
        Effect.gen(function* () {
          const host = yield* Host
          const sandbox = yield* dockerSandbox(host)
          yield* twoServiceProject(sandbox, host.image, "runc")
          yield* sandbox.remove
        }),
      TIMEOUT
    )

    it.scoped(
      "a version 1 file (services at the top level) builds and comes up on runc, with no override (docker-compose refuses to mix versions), and down removes its containers",
      () =>
        Effect.gen(function* () {
          const host = yield* Host
          const sandbox = yield* dockerSandbox(host)
          const written = yield* shell(
            sandbox,
            "mkdir -p /work/v1 && cat > /work/v1/Dockerfile",
            `FROM ${host.image}\nRUN echo v1-step-marker\nCMD ["sleep", "3600"]\n`
          )
          expect(written.code).toBe(0)
          const project = {
            file: {
              text: `app:\n  build: .\nweb:\n  image: ${host.image}\n  command: ["sleep", "3600"]\n`
            },
            project: "old",
            projectDirectory: "/work/v1"
          }
          const up = yield* Effect.scoped(
            Effect.flatMap(sandbox.docker.compose.up({ ...project, build: true }), (command) =>
              Effect.zip(Stream.runCollect(command.lines), command.wait)
            )
          )
          expect([...up[0]]).toContain("v1-step-marker")
          const ps = yield* dockerLines(sandbox.docker.compose.ps(project))
          expect(ps.some((line) => /^old_app_1\s.*\sUp/.test(line))).toBe(true)
          expect(ps.some((line) => /^old_web_1\s.*\sUp/.test(line))).toBe(true)
          yield* Effect.scoped(
            Effect.flatMap(sandbox.docker.compose.down(project), (down) => down.wait)
          )
          expect((yield* shell(sandbox, "docker ps --all --quiet")).lines).toEqual([])
          yield* sandbox.remove
        }),
      TIMEOUT
    )

    it.scoped(
      "volumes: a named volume survives its container's removal, is listed and inspected, refuses rm while in use, and goes with volume rm",
      () =>
        Effect.gen(function* () {
          const host = yield* Host
          const sandbox = yield* dockerSandbox(host)
          // VolumeInUse while a stopped container holds it, VolumeNotFound once removed.
          yield* volumeLifecycle(sandbox, host.image)
          yield* sandbox.remove
        }),
      TIMEOUT
    )

    it.scoped(
      "build (RUN steps on the sandbox's network) and compose build: their lines stream while they run, and the images are there after",
      () =>
        Effect.gen(function* () {
          const host = yield* Host
          const sandbox = yield* dockerSandbox(host)
          const dockerfile = [
            `FROM ${host.image}`,
            // The sandbox's network (host, by default): the registry on 127.0.0.1 answers.
            "RUN wget -q -O- http://127.0.0.1:5000/v2/_catalog && echo step-marker && sleep 3",
            'CMD ["echo", "built image runs"]',
            ""
          ].join("\n")
          const written = yield* shell(
            sandbox,
            "mkdir -p /work/app && cat > /work/app/Dockerfile",
            dockerfile
          )
          expect(written.code).toBe(0)

          const built = yield* Effect.scoped(
            Effect.gen(function* () {
              const build = yield* sandbox.docker.build({ tag: "app:1", context: "/work/app" })
              const marker = yield* firstLineWith(build, "step-marker")
              yield* build.wait
              return { marker, lines: [...(yield* Stream.runCollect(build.lines))] }
            })
          )
          // The RUN step's line came while the build still ran (it sleeps 3 s after it).
          expect(built.marker.running).toBe(true)
          expect(built.lines).toContain("Successfully tagged app:1")
          expect(built.lines.some((line) => line.includes('"repositories":["demo/busybox"]'))).toBe(
            true
          )

          const composeFile = `
services:
  app:
    build: .
    image: composed-app:1
`
          const composed = yield* Effect.scoped(
            Effect.gen(function* () {
              const build = yield* sandbox.docker.compose.build({
                file: { text: composeFile },
                project: "builder",
                projectDirectory: "/work/app",
                noCache: true
              })
              const marker = yield* firstLineWith(build, "step-marker")
              yield* build.wait
              return marker
            })
          )
          expect(composed.running).toBe(true)
          const images = yield* dockerLines(sandbox.docker.images())
          expect(images.some((line) => /^composed-app\s+1\s/.test(line))).toBe(true)
          yield* sandbox.remove
        }),
      TIMEOUT
    )

    it.scoped(
      "compose and volume arguments are validated before anything runs; a file compose refuses is DockerCommandFailed, an unreadable answer DockerOutputInvalid, a sandbox without docker-compose ComposeNotInstalled",
      () =>
        Effect.gen(function* () {
          const host = yield* Host
          const sandbox = yield* dockerSandbox(host)
          const compose = sandbox.docker.compose
          const text = { text: "services: {}\n" }
          const refused = [
            compose.up({ file: text, project: "Upper Case" }),
            compose.up({ file: text, project: "-p" }),
            compose.up({ file: { path: "relative/compose.yml" }, project: "ok" }),
            compose.up({ file: { text: "a\0b" }, project: "ok" }),
            compose.up({ file: text, project: "ok", services: ["--scale"] }),
            compose.up({ file: text, project: "ok", projectDirectory: "relative" }),
            compose.logs({ file: text, project: "ok", tail: -1 }),
            compose.down({ file: { path: "-f" }, project: "ok" })
          ]
          for (const command of refused) {
            const error = yield* Effect.flip(Effect.scoped(command))
            expect(error._tag).toBe("InvalidDockerArgument")
          }
          for (const command of [
            sandbox.docker.volume.create("-x"),
            sandbox.docker.volume.create("a"),
            sandbox.docker.volume.create("ok-name", { labels: { "-l": "x" } }),
            sandbox.docker.volume.inspect("--all"),
            sandbox.docker.volume.rm("a/b")
          ]) {
            const error = yield* Effect.flip(command)
            expect(error._tag).toBe("InvalidDockerArgument")
          }
          // Nothing ran: no temp directory was made.
          const temps = yield* shell(sandbox, "ls /tmp | grep sandbox-docker-compose || true")
          expect(temps.lines).toEqual([])

          // A file docker-compose refuses: its reason, in DockerCommandFailed.
          const broken = yield* Effect.flip(
            Effect.scoped(
              Effect.flatMap(
                compose.up({ file: { text: "services:\n  web: [unclosed\n" }, project: "ok" }),
                (up) => up.wait
              )
            )
          )
          expect(broken).toMatchObject({ _tag: "DockerCommandFailed", exitCode: 1 })
          expect(broken.message).toContain("docker-compose")

          // A docker whose answer is not Docker's JSON: DockerOutputInvalid.
          const wrapped = yield* shell(
            sandbox,
            "cat > /usr/local/bin/docker && chmod +x /usr/local/bin/docker",
            [
              "#!/bin/sh",
              'case "$*" in *"volume ls"*) echo not-json; exit 0 ;; esac',
              'exec /usr/bin/docker "$@"',
              ""
            ].join("\n")
          )
          expect(wrapped.code).toBe(0)
          const unreadable = yield* Effect.flip(sandbox.docker.volume.ls())
          expect(unreadable).toMatchObject({ _tag: "DockerOutputInvalid" })
          expect(unreadable.message).toContain("volume ls")
          yield* shell(sandbox, "rm /usr/local/bin/docker")

          const removed = yield* shell(sandbox, "rm $(command -v docker-compose)")
          expect(removed.code).toBe(0)
          const missing = yield* Effect.flip(
            Effect.scoped(compose.ps({ file: text, project: "ok" }))
          )
          expect(missing).toMatchObject({ _tag: "ComposeNotInstalled", binary: "docker-compose" })
          expect(missing.message).toContain("apt-get install docker-compose")
          yield* sandbox.remove
        }),
      TIMEOUT
    )

    it.scoped(
      "login from DOCKER_USERNAME/DOCKER_PASSWORD: automatic before the first command, works against a registry with auth, and the password appears in no argv, output, log, event or error",
      () =>
        Effect.gen(function* () {
          const host = yield* Host
          const password = "pw-Zq81-never-shown"
          const registry = yield* authRegistry(host, "tester", password)
          const logged: Array<string> = []
          const captured = Logger.make(({ annotations, message }) => {
            logged.push(JSON.stringify({ message, annotations: [...annotations] }))
          })
          const events: Array<string> = []
          const texts: Array<string> = []
          yield* Effect.gen(function* () {
            const sandbox = yield* Sandbox.create(
              {
                image: SANDBOX_IMAGE,
                dockerEnabled: true,
                network: "host",
                env: {
                  DOCKER_USERNAME: "tester",
                  DOCKER_PASSWORD: password,
                  DOCKER_REGISTRY: registry
                }
              },
              {
                engineSocket: host.socket,
                stopGrace: "3 seconds",
                onEvent: (event) => Effect.sync(() => void events.push(JSON.stringify(event)))
              }
            )
            const privateImage = `${registry}/private/busybox:1`
            const commands: Array<SandboxDocker.DockerCommand> = []
            const step = (
              command: Effect.Effect<
                SandboxDocker.DockerCommand,
                SandboxDocker.DockerError,
                Scope.Scope
              >
            ) =>
              Effect.scoped(
                Effect.gen(function* () {
                  const handle = yield* command
                  commands.push(handle)
                  const lines = yield* Stream.runCollect(handle.lines)
                  texts.push(...lines)
                  yield* handle.wait
                })
              )
            // The registry answers only a logged-in client: push and pull work.
            yield* step(sandbox.docker.pull(host.image))
            // Logged in before that first command ran.
            const auths = yield* shell(sandbox, "cat /root/.docker/config.json")
            expect(auths.lines.join("\n")).toContain(`"${registry}"`)
            yield* step(sandbox.docker.tag(host.image, privateImage))
            yield* step(sandbox.docker.push(privateImage))
            yield* step(sandbox.docker.rmi(privateImage))
            yield* step(sandbox.docker.pull(privateImage))
            for (const command of commands) texts.push(...command.argv)
            yield* sandbox.remove
          }).pipe(
            Effect.provide(Logger.replace(Logger.defaultLogger, captured)),
            Logger.withMinimumLogLevel(LogLevel.All)
          )
          expect(texts.some((line) => line.includes("Pushed") || line.includes("digest:"))).toBe(
            true
          )

          // Wrong password: every docker command fails with DockerLoginFailed, no secret in it.
          const wrong = "wrong-Pw-7741-never-shown"
          const error = yield* Effect.gen(function* () {
            const sandbox = yield* dockerSandbox(host, {
              DOCKER_USERNAME: "tester",
              DOCKER_PASSWORD: wrong,
              DOCKER_REGISTRY: registry
            })
            const failed = yield* Effect.flip(Effect.scoped(sandbox.docker.ps()))
            const again = yield* Effect.flip(sandbox.docker.volume.ls())
            expect(again._tag).toBe("DockerLoginFailed")
            yield* sandbox.remove
            return failed
          }).pipe(
            Effect.provide(Logger.replace(Logger.defaultLogger, captured)),
            Logger.withMinimumLogLevel(LogLevel.All)
          )
          expect(error).toMatchObject({
            _tag: "DockerLoginFailed",
            username: "tester",
            registry,
            exitCode: 1
          })
          expect(error.message).toContain("Check the credentials")
          expect(error.message).toMatch(/401|unauthorized/i)

          const everything = [
            ...texts,
            ...logged,
            ...events,
            JSON.stringify(error),
            error.message,
            String(error)
          ].join("\n")
          expect(everything).not.toContain(password)
          expect(everything).not.toContain(wrong)
        }),
      TIMEOUT
    )
  })
})
