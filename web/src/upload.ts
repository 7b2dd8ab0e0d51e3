// One file's way into a message: POST /attachments/presign, a PUT straight to the object
// store with exactly the headers the presign gave (XMLHttpRequest, whose upload reports
// progress, which fetch does not), then POST /attachments/{id}/complete, whose answer is the
// attachment as the server checked it. Cancel aborts the PUT.

import { ApiError, type Api } from './api';
import { contentTypeOf, maxBytesFrom, safeFileName } from './attachments';
import type { Attachment } from './protocol';

export interface UploadEvents {
  /** the presign answered: the transfer starts */
  uploading(): void;
  progress(loaded: number, total: number): void;
  /** the bytes are in the object store: the server checks them */
  completing(): void;
  /** the server's limit, when an answer said it */
  maxBytes(n: number): void;
}

export interface UploadHandle {
  /** the checked attachment; rejects with an ApiError (code `cancelled` after cancel()) */
  readonly done: Promise<Attachment>;
  cancel(): void;
}

const cancelled = () => new ApiError(0, 'cancelled', 'The upload was cancelled.');

/** The object store's reason from its XML error body (`<Message>...</Message>`), if any. */
export function storeMessage(body: string): string {
  const m = /<Message>([^<]{1,300})<\/Message>/.exec(body);
  return m?.[1]?.trim() ?? '';
}

/** PUTs `file` to a presigned URL with exactly `headers`, reporting progress. */
function put(url: string, headers: Record<string, string>, file: Blob, onProgress: (loaded: number, total: number) => void, xhrRef: { xhr: XMLHttpRequest | null }): Promise<void> {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhrRef.xhr = xhr;
    xhr.open('PUT', url);
    for (const [k, v] of Object.entries(headers)) xhr.setRequestHeader(k, v);
    xhr.upload.onprogress = (e) => onProgress(e.loaded, e.lengthComputable ? e.total : file.size);
    xhr.onload = () => {
      xhrRef.xhr = null;
      if (xhr.status >= 200 && xhr.status < 300) resolve();
      else {
        const why = storeMessage(typeof xhr.responseText === 'string' ? xhr.responseText : '');
        reject(new ApiError(xhr.status, 'store', why || `the file store answered ${xhr.status}`));
      }
    };
    xhr.onerror = () => {
      xhrRef.xhr = null;
      reject(new ApiError(0, 'network', 'the file store could not be reached'));
    };
    xhr.onabort = () => {
      xhrRef.xhr = null;
      reject(cancelled());
    };
    xhr.send(file);
  });
}

/** Starts the upload of `file` to conversation `convoId`. */
export function uploadFile(api: Api, convoId: string, file: File, on: UploadEvents): UploadHandle {
  let stopped = false;
  const ref: { xhr: XMLHttpRequest | null } = { xhr: null };
  const run = async (): Promise<Attachment> => {
    let p;
    try {
      p = await api.presign(convoId, safeFileName(file.name), contentTypeOf(file), file.size);
    } catch (e) {
      if (e instanceof ApiError && e.code === 'attachment_too_large') {
        const n = maxBytesFrom(e.message);
        if (n !== null) on.maxBytes(n);
      }
      throw e;
    }
    if (p.max_bytes !== null) on.maxBytes(p.max_bytes);
    if (stopped) throw cancelled();
    on.uploading();
    await put(p.url, p.headers, file, on.progress, ref);
    if (stopped) throw cancelled();
    on.completing();
    const att = await api.completeAttachment(p.id);
    if (stopped) throw cancelled();
    return att;
  };
  return {
    done: run(),
    cancel() {
      stopped = true;
      ref.xhr?.abort();
    },
  };
}
