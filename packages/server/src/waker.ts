/**
 * The sleep of a background loop that new work can end early: `wake()` ends
 * a sleep under way, and a wake between `reset()` and the next sleep is
 * remembered (`woken`), so the loop goes on at once instead of sleeping.
 */
export class Waker {
  #woken = false
  #wakeUp: (() => void) | undefined

  /** Whether `wake()` was called since the last `reset()`. */
  get woken(): boolean {
    return this.#woken
  }

  reset(): void {
    this.#woken = false
  }

  wake(): void {
    this.#woken = true
    this.#wakeUp?.()
  }

  /** Resolves after `ms`, or at the next `wake()`. */
  sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(done, ms)
      const self = this
      function done() {
        clearTimeout(timer)
        self.#wakeUp = undefined
        resolve()
      }
      this.#wakeUp = done
    })
  }
}
