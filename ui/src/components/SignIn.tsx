import { useEffect, useRef, useState } from "preact/hooks";
import { isAbort, signIn, signInReason, tryToken } from "../api";
import { normalizeToken, validTokenChars } from "../lib/auth";

/**
 * The sign-in screen (`up --auth tokens`): shown after the server answered 401. The token is
 * checked before it is kept (sessionStorage only); the URL is not touched, so the screen it
 * names loads as it was once signed in.
 */
export function SignIn() {
  const [value, setValue] = useState("");
  const [err, setErr] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);
  const input = useRef<HTMLInputElement>(null);
  useEffect(() => input.current?.focus(), []);

  async function submit(e: Event) {
    e.preventDefault();
    const t = normalizeToken(value);
    if (!t) {
      setErr("Enter an access token (an admin makes one with `wiretrail auth token add`).");
      return;
    }
    if (!validTokenChars(t)) {
      setErr("That is not a wiretrail token: it has spaces or other characters a token never has.");
      return;
    }
    setBusy(true);
    setErr(null);
    try {
      const bad = await tryToken(t);
      if (bad) {
        setErr(bad);
        input.current?.select();
      } else {
        setValue("");
        signIn(t);
      }
    } catch (x) {
      if (!isAbort(x)) setErr(String(x));
    } finally {
      setBusy(false);
    }
  }

  const reason = signInReason.value;
  return (
    <div class="signin-page">
      <form class="signin" aria-label="Sign in" onSubmit={(e) => void submit(e)}>
        <h1>Sign in to wiretrail</h1>
        <p class="muted small">
          This server needs an access token. An admin makes one with <code>wiretrail auth token add</code>. It is kept in this tab
          only (session storage) and sent as <code>Authorization: Bearer …</code>.
        </p>
        {reason && !err && (
          <p class="muted small" role="status">
            {reason}
          </p>
        )}
        <label class="signin-label" for="wt-token">
          Access token
        </label>
        <input
          ref={input}
          id="wt-token"
          type="password"
          name="token"
          autocomplete="off"
          spellcheck={false}
          value={value}
          onInput={(e) => setValue(e.currentTarget.value)}
        />
        <button class="btn primary" type="submit" disabled={busy}>
          Sign in
        </button>
        {err && (
          <div class="error-box" role="alert">
            {err}
          </div>
        )}
      </form>
    </div>
  );
}
