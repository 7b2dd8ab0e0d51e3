import { useSyncExternalStore } from 'react';
import type { ChatClient, ChatState } from '../chat';

export function useChat(client: ChatClient): ChatState {
  return useSyncExternalStore(client.subscribe, client.getState, client.getState);
}
