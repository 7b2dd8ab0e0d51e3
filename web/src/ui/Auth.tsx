import { useId, useState, type FormEvent } from 'react';
import { ApiError, checkCredentials, type Api } from '../api';

type Mode = 'login' | 'register';

export function AuthScreen({ api }: { api: Api }) {
  const [mode, setMode] = useState<Mode>('login');
  const [username, setUsername] = useState('');
  const [password, setPassword] = useState('');
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<string | null>(null);
  const [info, setInfo] = useState<string | null>(null);
  const errId = useId();

  async function submit(e: FormEvent) {
    e.preventDefault();
    const bad = checkCredentials(username, password, mode === 'register');
    if (bad) {
      setError(bad);
      return;
    }
    setBusy(true);
    setError(null);
    setInfo(null);
    try {
      if (mode === 'register') {
        await api.register(username, password);
        setInfo('Account created. Logging you in…');
      }
      await api.login(username, password);
    } catch (err) {
      if (err instanceof ApiError) {
        if (err.status === 409) setError('That username is taken.');
        else if (err.status === 503 && err.code === 'busy') setError('The server is busy; try again in a moment.');
        else if (err.status === 401) setError('Wrong username or password.');
        else setError(err.message);
      } else {
        setError('Something went wrong.');
      }
      setBusy(false);
    }
  }

  const title = mode === 'login' ? 'Log in' : 'Create an account';
  return (
    <main className="auth">
      <form className="auth-card" onSubmit={submit} aria-describedby={error ? errId : undefined} noValidate>
        <h1 className="brand">kchat</h1>
        <h2>{title}</h2>
        <label>
          Username
          <input
            name="username"
            autoComplete="username"
            autoFocus
            required
            maxLength={64}
            value={username}
            onChange={(e) => setUsername(e.target.value)}
          />
        </label>
        <label>
          Password
          <input
            name="password"
            type="password"
            autoComplete={mode === 'login' ? 'current-password' : 'new-password'}
            required
            maxLength={1024}
            value={password}
            onChange={(e) => setPassword(e.target.value)}
          />
        </label>
        {error && (
          <p id={errId} className="error" role="alert">
            {error}
          </p>
        )}
        {info && <p className="info" role="status">{info}</p>}
        <button type="submit" className="primary" disabled={busy}>
          {busy ? 'Please wait…' : title}
        </button>
        <p className="switch">
          {mode === 'login' ? 'New here?' : 'Have an account?'}{' '}
          <button
            type="button"
            className="link"
            onClick={() => {
              setMode(mode === 'login' ? 'register' : 'login');
              setError(null);
            }}
          >
            {mode === 'login' ? 'Create an account' : 'Log in'}
          </button>
        </p>
      </form>
    </main>
  );
}
