import { usageError } from './api-client.js';
import { COMMANDS, FILE_ARGUMENTS } from './command-table.js';

/**
 * `meterline completion bash|zsh`: a completion script for the shell, generated from the command table and the
 * option table the CLI parses with. It completes commands, sub-commands, long options, and file names where a
 * command or option takes a file; it skips over option values, so `--reason payment` is not taken for a command.
 */

type OptionTable = Readonly<Record<string, { type: 'string' | 'boolean' }>>;

const words = (list: Iterable<string>) => [...list].join(' ');

function shape(options: OptionTable) {
  const names = Object.keys(options).sort();
  return {
    commands: words(Object.keys(COMMANDS)),
    options: words(names.map((n) => `--${n}`)),
    valued: names.filter((n) => options[n]!.type === 'string').map((n) => `--${n}`),
    withSubs: Object.entries(COMMANDS).filter(([, subs]) => subs.length > 0),
    fileOptions: FILE_ARGUMENTS.options.map((n) => `--${n}`),
    fileCommands: FILE_ARGUMENTS.commands,
  };
}

function bash(options: OptionTable): string {
  const s = shape(options);
  return `# meterline completion for bash: eval "$(meterline completion bash)", or save it as
# ~/.local/share/bash-completion/completions/meterline
_meterline() {
  local cur=\${COMP_WORDS[COMP_CWORD]} prev=\${COMP_WORDS[COMP_CWORD-1]} cmd= sub= i
  for ((i = 1; i < COMP_CWORD; i++)); do
    case \${COMP_WORDS[i]} in
      ${s.valued.join('|')}) ((i++)) ;;
      -*) ;;
      *) if [[ -z $cmd ]]; then cmd=\${COMP_WORDS[i]}; elif [[ -z $sub ]]; then sub=\${COMP_WORDS[i]}; fi ;;
    esac
  done
  case $prev in
    ${s.fileOptions.join('|')}) COMPREPLY=($(compgen -f -- "$cur")); return ;;
    ${s.valued.filter((o) => !s.fileOptions.includes(o)).join('|')}) COMPREPLY=(); return ;;
  esac
  if [[ $cur == -* ]]; then COMPREPLY=($(compgen -W "${s.options}" -- "$cur")); return; fi
  if [[ -z $cmd ]]; then COMPREPLY=($(compgen -W "${s.commands}" -- "$cur")); return; fi
  case "$cmd $sub" in
    ${s.fileCommands.map((c) => (c.includes(' ') ? `"${c}"` : `"${c} "*`)).join('|')}) COMPREPLY=($(compgen -f -- "$cur")); return ;;
  esac
  if [[ -z $sub ]]; then
    case $cmd in
${s.withSubs.map(([c, subs]) => `      ${c}) COMPREPLY=($(compgen -W "${words(subs)}" -- "$cur")) ;;`).join('\n')}
    esac
  fi
}
complete -F _meterline meterline
`;
}

function zsh(options: OptionTable): string {
  const s = shape(options);
  return `#compdef meterline
# meterline completion for zsh: save it as _meterline in a directory of $fpath, or eval "$(meterline completion zsh)"
# after compinit
_meterline() {
  local cmd= sub= i w
  local -a valued=(${s.valued.join(' ')})
  for ((i = 2; i < CURRENT; i++)); do
    w=\${words[i]}
    if [[ $w == -* ]]; then
      (( \${valued[(Ie)$w]} )) && ((i++))
      continue
    fi
    if [[ -z $cmd ]]; then cmd=$w; elif [[ -z $sub ]]; then sub=$w; fi
  done
  case \${words[CURRENT-1]} in
    ${s.fileOptions.join('|')}) _files; return ;;
  esac
  (( \${valued[(Ie)\${words[CURRENT-1]}]} )) && return
  if [[ $PREFIX == -* ]]; then compadd -- ${s.options}; return; fi
  if [[ -z $cmd ]]; then compadd -- ${s.commands}; return; fi
  case "$cmd $sub" in
    ${s.fileCommands.map((c) => (c.includes(' ') ? `"${c}"` : `"${c} "*`)).join('|')}) _files; return ;;
  esac
  if [[ -z $sub ]]; then
    case $cmd in
${s.withSubs.map(([c, subs]) => `      ${c}) compadd -- ${words(subs)} ;;`).join('\n')}
    esac
  fi
}
if [[ \${zsh_eval_context[-1]} == loadautofunc ]]; then _meterline "$@"; else compdef _meterline meterline; fi
`;
}

export function completionScript(args: string[], options: OptionTable): string {
  const [shell, extra] = args;
  if (extra !== undefined) throw usageError(`unexpected argument "${extra}" for completion`);
  if (shell === 'bash') return bash(options);
  if (shell === 'zsh') return zsh(options);
  throw usageError(`completion needs the shell: ${COMMANDS.completion!.join(' or ')} (got ${shell ?? 'nothing'})`);
}
