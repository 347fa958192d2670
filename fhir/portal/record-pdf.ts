/**
 * The human-readable PDF of a health record: the summary laid out on US Letter pages in the
 * standard Helvetica fonts (nothing to embed or fetch). Those fonts encode WinAnsi only, so
 * text is folded to it first: accents kept where WinAnsi has them, typographic punctuation
 * made plain, anything else shown as "?".
 */
import { PDFDocument, StandardFonts, rgb } from 'pdf-lib';
import type { PDFFont, PDFPage } from 'pdf-lib';
import type { RecordSummary } from './record-summary.js';

const PAGE = { width: 612, height: 792, margin: 54 };

/** Characters of WinAnsi outside Latin-1 (0x80-0x9F), which Helvetica can show. */
const WIN_ANSI_EXTRA = new Set('€‚ƒ„…†‡ˆ‰Š‹ŒŽ‘’“”•–—˜™š›œžŸ');
const PLAIN: Record<string, string> = { '\u2010': '-', '\u2011': '-', '\u2212': '-', '\u00a0': ' ', '\u2009': ' ', '\u202f': ' ', '\u2192': '->' };

/** `text` with only characters the standard fonts can encode. */
export function winAnsi(text: string): string {
  let out = '';
  for (const ch of text.replace(/\t/g, '    ')) {
    const code = ch.codePointAt(0)!;
    if ((code >= 0x20 && code <= 0x7e) || (code >= 0xa1 && code <= 0xff) || WIN_ANSI_EXTRA.has(ch)) {
      out += ch;
    } else if (PLAIN[ch] !== undefined) {
      out += PLAIN[ch];
    } else {
      const folded = ch.normalize('NFKD').replace(/[\u0300-\u036f]/g, '');
      out += folded && [...folded].every((c) => c.charCodeAt(0) >= 0x20 && c.charCodeAt(0) <= 0x7e) ? folded : '?';
    }
  }
  return out;
}

export async function recordPdf(summary: RecordSummary): Promise<Buffer> {
  const doc = await PDFDocument.create();
  doc.setTitle(winAnsi(summary.title));
  doc.setProducer('CareThread');
  doc.setCreator('CareThread patient portal');
  const regular = await doc.embedFont(StandardFonts.Helvetica);
  const bold = await doc.embedFont(StandardFonts.HelveticaBold);
  const writer = new PageWriter(doc, regular);

  writer.line(summary.title, bold, 18);
  writer.gap(6);
  for (const line of summary.about) {
    writer.line(line, regular, 11);
  }
  for (const section of summary.sections) {
    writer.gap(14);
    writer.line(section.title, bold, 14);
    writer.gap(4);
    if (!section.items.length) {
      writer.line('None recorded.', regular, 11);
    }
    for (const item of section.items) {
      writer.gap(4);
      writer.line(item.heading, bold, 11);
      for (const line of item.lines) {
        writer.line(line, regular, 10, 12);
      }
    }
  }
  writer.footer('Prepared by CareThread. This copy shows what the practice holds in CareThread at the time it was made.');
  return Buffer.from(await doc.save());
}

/** Writes wrapped lines top to bottom, starting new pages as needed. */
class PageWriter {
  private page: PDFPage;
  private y = PAGE.height - PAGE.margin;

  constructor(
    private readonly doc: PDFDocument,
    private readonly font: PDFFont
  ) {
    this.page = doc.addPage([PAGE.width, PAGE.height]);
  }

  gap(points: number): void {
    this.y -= points;
  }

  line(text: string, font: PDFFont, size: number, indent = 0): void {
    const width = PAGE.width - 2 * PAGE.margin - indent;
    for (const part of wrap(winAnsi(text), font, size, width)) {
      if (this.y - size < PAGE.margin) {
        this.page = this.doc.addPage([PAGE.width, PAGE.height]);
        this.y = PAGE.height - PAGE.margin;
      }
      this.y -= size * 1.3;
      this.page.drawText(part, { x: PAGE.margin + indent, y: this.y, size, font, color: rgb(0.1, 0.1, 0.12) });
    }
  }

  footer(text: string): void {
    const pages = this.doc.getPages();
    pages.forEach((page, i) => {
      page.drawText(winAnsi(`${text}  Page ${i + 1} of ${pages.length}`), { x: PAGE.margin, y: PAGE.margin / 2, size: 8, font: this.font, color: rgb(0.4, 0.4, 0.45) });
    });
  }
}

/** Splits text into lines no wider than `width`, breaking at spaces (or inside a long word). */
function wrap(text: string, font: PDFFont, size: number, width: number): string[] {
  const lines: string[] = [];
  for (const paragraph of text.split(/\r?\n/)) {
    let current = '';
    for (const word of paragraph.split(' ')) {
      const candidate = current ? `${current} ${word}` : word;
      if (font.widthOfTextAtSize(candidate, size) <= width) {
        current = candidate;
        continue;
      }
      if (current) {
        lines.push(current);
      }
      current = word;
      while (font.widthOfTextAtSize(current, size) > width && current.length > 1) {
        let cut = current.length - 1;
        while (cut > 1 && font.widthOfTextAtSize(current.slice(0, cut), size) > width) {
          cut--;
        }
        lines.push(current.slice(0, cut));
        current = current.slice(cut);
      }
    }
    lines.push(current);
  }
  return lines;
}
