import { describe, expect, it } from 'vitest';
import { LineSplitter } from './line-splitter.js';

describe('line splitter', () => {
  it('splits on newlines, drops a CR before them and keeps an unfinished line until the end', () => {
    const splitter = new LineSplitter();
    expect(splitter.push(Buffer.from('one\r\ntwo\n\nthr'))).toEqual(['one', 'two', '']);
    expect(splitter.push(Buffer.from('ee'))).toEqual([]);
    expect(splitter.end()).toEqual(['three']);
  });

  it('keeps a character cut between two reads whole, and turns invalid UTF-8 into U+FFFD', () => {
    const splitter = new LineSplitter();
    const euro = Buffer.from('€\n');
    expect(splitter.push(euro.subarray(0, 1))).toEqual([]);
    expect(splitter.push(euro.subarray(1))).toEqual(['€']);
    expect(splitter.push(Buffer.from([0x61, 0xff, 0x62, 0x0a]))).toEqual(['a\ufffdb']);
  });

  it('cuts a runaway line into pieces of the cap, without splitting a surrogate pair', () => {
    const splitter = new LineSplitter(4);
    expect(splitter.push(Buffer.from('abcdefghij'))).toEqual(['abcd', 'efgh']);
    expect(splitter.end()).toEqual(['ij']);
    const emoji = new LineSplitter(4);
    expect(emoji.push(Buffer.from('abc😀d\n'))).toEqual(['abc', '😀d']);
  });
});
