// A call's outcome as the model-based suite compares it: a value, or a typed error's code and reason.
import { WebHmmError } from '../../src/errors.ts';

export type Outcome<T> =
  | { readonly ok: true; readonly value: T }
  | {
      readonly ok: false;
      readonly code: string;
      readonly reason: string;
      readonly address?: number;
      readonly message: string;
    };

/** Runs `body`; a WebHmmError becomes a failed outcome, anything else is rethrown (a bug). */
export function outcomeOf<T>(body: () => T): Outcome<T> {
  try {
    return { ok: true, value: body() };
  } catch (error) {
    return failure(error);
  }
}

export async function outcomeOfAsync<T>(body: () => Promise<T>): Promise<Outcome<T>> {
  try {
    return { ok: true, value: await body() };
  } catch (error) {
    return failure(error);
  }
}

function failure(error: unknown): Outcome<never> {
  if (!(error instanceof WebHmmError)) throw error;
  const address = (error as { address?: unknown }).address;
  return {
    ok: false,
    code: error.code,
    reason: error.reason,
    ...(typeof address === 'number' ? { address } : {}),
    message: error.message,
  };
}
