/**
 * One CSV field (RFC 4180) that is safe to open in a spreadsheet; the audit export and the reconciliation report
 * both write through it.
 *
 * - Quoted when it holds a comma, a double quote, CR or LF; quotes are doubled.
 * - Text that a spreadsheet would run as a formula, starting with `=`, `+`, `-`, `@`, tab or CR (OWASP "CSV
 *   Injection"), gets a leading `'` and is quoted, so Excel, LibreOffice and Sheets show it as the text it is. A
 *   key name, a reference or a reason is someone's input; `=HYPERLINK(…)` in it must not become a link or a command.
 * - A number is written as a number: -12.5 is a value, not a formula. Only text is escaped.
 *
 * A program reading the file back gets the escaped text with its leading `'`.
 */
export function csvField(value: string | number | null): string {
  if (value === null) return '';
  if (typeof value === 'number') return String(value);
  const text = FORMULA_START.test(value) ? `'${value}` : value;
  return text !== value || NEEDS_QUOTES.test(text) ? `"${text.replaceAll('"', '""')}"` : text;
}

/** OWASP's list: what makes Excel, LibreOffice Calc or Google Sheets treat a cell as a formula (or start a DDE call). */
const FORMULA_START = /^[=+\-@\t\r]/;
const NEEDS_QUOTES = /[",\r\n]/;
