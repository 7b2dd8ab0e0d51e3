import { useEffect, useMemo, useState } from 'react';
import { Api, type Session } from '../api';
import { AuthScreen } from './Auth';
import { ChatScreen } from './ChatScreen';

export function App() {
  const api = useMemo(() => new Api(), []);
  const [session, setSession] = useState<Session | null>(api.current);
  useEffect(() => api.onSession(setSession), [api]);
  // one ChatScreen (and so one ChatClient) per logged-in user: a token refresh keeps it
  return session ? (
    <ChatScreen key={session.user_id} api={api} session={session} />
  ) : (
    <AuthScreen api={api} />
  );
}
