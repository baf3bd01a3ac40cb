import { usageError } from './api-client.js';

/**
 * A secret (an API key) read the way `ps` and shell history never see it: all of stdin when it is piped, else typed
 * at a prompt on the terminal with echo off.
 */
export async function readSecret(prompt: string): Promise<string> {
  const stdin = process.stdin;
  if (!stdin.isTTY) {
    let text = '';
    for await (const chunk of stdin) text += chunk;
    return text;
  }
  // Echo off before the prompt shows: whatever is typed after the prompt is never echoed.
  stdin.setRawMode(true);
  stdin.setEncoding('utf8');
  process.stderr.write(prompt);
  return new Promise((resolve, reject) => {
    let typed = '';
    const finish = () => {
      stdin.off('data', onData);
      stdin.setRawMode(false);
      stdin.pause();
      process.stderr.write('\n');
    };
    const onData = (chunk: string) => {
      for (const ch of chunk) {
        if (ch === '\r' || ch === '\n') return void (finish(), resolve(typed));
        if (ch === '\u0003' || ch === '\u0004') return void (finish(), reject(usageError('no API key given (cancelled at the prompt)')));
        typed = ch === '\u007f' || ch === '\b' ? typed.slice(0, -1) : typed + ch;
      }
    };
    stdin.on('data', onData);
    stdin.resume();
  });
}
