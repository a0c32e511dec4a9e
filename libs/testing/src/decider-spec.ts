/**
 * Given-when-then for a pure decider (STYLE.md):
 *   given([submitted, queued]).when(dispatch).then([dispatched])
 */
export interface Decider<C, E, S> {
  decide(command: C, state: S): E[];
  evolve(state: S, event: E): S;
  initialState(): S;
}

export function deciderSpec<C, E, S>(decider: Decider<C, E, S>) {
  return (events: E[]) => ({
    when: (command: C) => {
      const run = () => decider.decide(command, events.reduce(decider.evolve, decider.initialState()));
      return {
        then: (expected: E[]) => expect(run()).toEqual(expected),
        thenNothing: () => expect(run()).toEqual([]),
        thenThrows: (error: abstract new (...args: never[]) => Error) => expect(run).toThrow(error as unknown as new () => Error),
        /** For assertions beyond equality. */
        events: run,
      };
    },
  });
}
