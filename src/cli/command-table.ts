/**
 * The commands `meterline` knows and the sub-commands of each: the CLI refuses a command not in this table, and the
 * shell completion scripts are generated from it (and from the option table the arguments are parsed with), so
 * neither can drift from what the CLI accepts.
 */
export const COMMANDS: Readonly<Record<string, readonly string[]>> = {
  reconnect: [],
  disconnect: [],
  limit: [],
  approve: [],
  order: [],
  cancel: [],
  orders: [],
  bulk: [],
  queue: [],
  supply: [],
  timeline: [],
  'work-orders': ['assign', 'complete'],
  'success-rates': [],
  plan: ['draft', 'approve', 'reject', 'cancel', 'show', 'list'],
  keys: ['import', 'list', 'renew'],
  alerts: ['ack', 'clear'],
  breakers: ['reset'],
  audit: ['verify', 'export'],
  'api-keys': ['list', 'create', 'rotate', 'revoke'],
  whoami: [],
  login: [],
  context: ['list', 'use', 'remove'],
  completion: ['bash', 'zsh'],
};

/** Commands and options whose argument is a file the shell should offer. */
export const FILE_ARGUMENTS = { commands: ['bulk', 'keys import'], options: ['file'] } as const;
