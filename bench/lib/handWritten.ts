/**
 * The scale section's floor: one fake daemon watched by hand-written
 * callbacks, with no library and no Effect. It does what the library does
 * for a daemon, minimally: a watch on the socket's directory, `stat`,
 * `GET /_ping` then `GET /info` (2 s timeout each, kept-alive connections,
 * the fast policy's spacing), then a `/_ping` every second until three fail
 * in a row or the daemon exits. Run beside the library in the same bench,
 * it shows what this machine can do at all, so that the library's figures
 * read against the machine rather than in a vacuum.
 */
import { stat, watch } from "node:fs"
import * as Http from "node:http"
import * as Path from "node:path"

/** What became of one daemon: as the scale worker records it. */
export interface HandWrittenOutcome {
  readonly readyAt: number | null
  readonly error: string | null
  readonly detectedDeathAt: number
}

/** The fast policy's spacing: 2 ms growing by half up to 500 ms. */
const spacing = (attempt: number) => Math.min(500, 2 * 1.5 ** attempt)

/**
 * Watches the daemon at `socket` until it dies, fails liveness, or `stop`
 * is called (resolves with no error then). `onExit` registers the daemon's
 * exit; `now` is the bench's clock.
 */
export const watchDaemon = (
  socket: string,
  onExit: (exited: () => void) => void,
  now: () => number
): { readonly outcome: Promise<HandWrittenOutcome>; readonly stop: () => void } => {
  let resolve: (outcome: HandWrittenOutcome) => void = () => {}
  const outcome = new Promise<HandWrittenOutcome>((r) => (resolve = r))
  const agent = new Http.Agent({ keepAlive: true, maxSockets: 8 })
  let over = false
  let ready = false
  let readyAt: number | null = null
  let timer: ReturnType<typeof setTimeout> | undefined
  let request: Http.ClientRequest | undefined
  let attempts = 0
  let failures = 0
  // The socket's directory, watched: its appearance cuts the wait short.
  const base = Path.basename(socket)
  const watcher = watch(Path.dirname(socket), { persistent: false }, (_event, name) => {
    if (name === base && !ready && timer !== undefined) {
      clearTimeout(timer)
      attempt()
    }
  })

  const finish = (error: string | null) => {
    if (over) return
    over = true
    clearTimeout(timer)
    request?.destroy()
    watcher.close()
    agent.destroy()
    resolve({ readyAt, error, detectedDeathAt: now() })
  }

  const get = (path: string, done: (ok: boolean) => void) => {
    let settled = false
    const settle = (ok: boolean) => {
      if (settled) return
      settled = true
      clearTimeout(timeout)
      done(ok)
    }
    const timeout = setTimeout(() => {
      current.destroy()
      settle(false)
    }, 2000)
    const current = Http.request({ socketPath: socket, agent, path }, (response) => {
      let body = ""
      response.setEncoding("utf8")
      response.on("data", (chunk: string) => (body += chunk))
      response.on("end", () => {
        if (path === "/info") JSON.parse(body)
        settle(response.statusCode === 200)
      })
    })
    current.on("error", () => settle(false))
    current.end()
    request = current
  }

  const later = (ms: number, task: () => void) => {
    clearTimeout(timer)
    timer = setTimeout(task, ms)
  }

  const liveness = () =>
    later(1000, () =>
      get("/_ping", (ok) => {
        if (over) return
        failures = ok ? 0 : failures + 1
        if (failures >= 3) return finish("DaemonUnhealthy")
        liveness()
      })
    )

  const attempt = () => {
    if (over) return
    timer = undefined
    stat(socket, (error, info) => {
      if (over) return
      // Not there yet: the directory watch wakes us; poll slowly meanwhile.
      if (error !== null || !info.isSocket()) return later(500, attempt)
      get("/_ping", (ok) => {
        if (over) return
        if (!ok) return later(spacing(attempts++), attempt)
        get("/info", (ok2) => {
          if (over) return
          if (!ok2) return later(spacing(attempts++), attempt)
          ready = true
          readyAt = now()
          liveness()
        })
      })
    })
  }

  onExit(() => finish(ready ? "DaemonDied" : "ExitedBeforeReady"))
  attempt()
  return { outcome, stop: () => finish(null) }
}
