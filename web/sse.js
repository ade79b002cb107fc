// Server-sent events read with fetch (EventSource cannot send the bearer header): a line
// parser after the WHATWG rules, and a subscription that reconnects with backoff and
// `Last-Event-ID` until it is aborted.

/** Feeds text chunks, calls `onEvent({event, data, id})` per complete event. Comments
 * (`: heartbeat`) and unknown fields are skipped; `retry:` is reported to `onRetry`. */
export function createParser(onEvent, onRetry = () => {}) {
  let buffer = '';
  let event = '';
  let data = [];
  let lastId = '';
  const line = (text) => {
    if (text === '') {
      if (data.length > 0) onEvent({ event: event || 'message', data: data.join('\n'), id: lastId });
      event = '';
      data = [];
      return;
    }
    if (text.startsWith(':')) return;
    const colon = text.indexOf(':');
    const field = colon === -1 ? text : text.slice(0, colon);
    let value = colon === -1 ? '' : text.slice(colon + 1);
    if (value.startsWith(' ')) value = value.slice(1);
    if (field === 'event') event = value;
    else if (field === 'data') data.push(value);
    else if (field === 'id' && !value.includes('\0')) lastId = value;
    else if (field === 'retry' && /^\d+$/.test(value)) onRetry(Number(value));
  };
  let afterCR = false; // the last chunk ended in CR: a LF opening the next one is its pair
  return (chunk) => {
    let text = chunk;
    if (afterCR && text.startsWith('\n')) text = text.slice(1);
    afterCR = false;
    buffer += text;
    let from = 0;
    for (let i = 0; i < buffer.length; i += 1) {
      const c = buffer[i];
      if (c !== '\n' && c !== '\r') continue;
      line(buffer.slice(from, i));
      if (c === '\r') {
        if (i + 1 === buffer.length) afterCR = true;
        else if (buffer[i + 1] === '\n') i += 1;
      }
      from = i + 1;
    }
    buffer = buffer.slice(from);
  };
}

/**
 * Keeps a stream open: `open(lastEventId, signal)` must answer a fetch Response (or throw
 * an ApiError). Calls `onEvent(event)` per event, `onState('live' | 'reconnecting')`.
 * Reconnects after a drop with exponential backoff (1 s .. 30 s; Retry-After first),
 * resuming with the last event id. Stops for good when `signal` aborts or `fatal(error)`
 * says so (e.g. a 401 or 403).
 */
export async function subscribe({ open, onEvent, onState = () => {}, signal, fatal = () => false }) {
  let lastId = '';
  let backoffMs = 1000;
  let retryMs = null;
  while (!signal.aborted) {
    let waitMs = backoffMs;
    try {
      const response = await open(lastId, signal);
      const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
      const feed = createParser(
        (event) => {
          if (event.id) lastId = event.id;
          backoffMs = 1000;
          onState('live');
          onEvent(event);
        },
        (ms) => {
          retryMs = ms;
        },
      );
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        feed(value);
      }
      waitMs = retryMs ?? 1000;
    } catch (error) {
      if (signal.aborted) return;
      if (fatal(error)) return;
      if (error?.retryAfter) waitMs = Math.max(waitMs, error.retryAfter * 1000);
    }
    if (signal.aborted) return;
    onState('reconnecting');
    await sleep(waitMs, signal);
    backoffMs = Math.min(backoffMs * 2, 30000);
  }
}

function sleep(ms, signal) {
  return new Promise((resolve) => {
    const timer = setTimeout(resolve, ms);
    signal.addEventListener('abort', () => {
      clearTimeout(timer);
      resolve();
    }, { once: true });
  });
}
