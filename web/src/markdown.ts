// Markdown (cells and text/markdown outputs) to sanitised DOM, as JupyterLab renders it: math
// taken out first (./math.ts), marked, then DOMPurify under a strict profile; then, on the
// sanitised nodes, the math typeset by KaTeX, attachments resolved, headings given ids and `¶`
// anchors, Python code blocks highlighted. Document content may show text, simple markup, links,
// math, MathML, inline SVG and the images it carries (data: URLs, the cell's attachments);
// nothing of it can style or select anything (no <style>, no style attributes, no classes of the
// page), take input (no forms) or load anything (no external images, media, frames, no CSS
// url()). Why this and not a shadow root: docs/SECURITY.md, "Rendering untrusted content". The
// page's Content-Security-Policy is the second layer: even markup that got past this could load
// nothing from another origin.

import DOMPurify, { type Config } from 'dompurify';
import { marked } from 'marked';
import { highlightCodeBlocks } from './highlight';
import { extractMath, restoreMath, withMathSource } from './math';

/** A cell's attachments (nbformat): file name -> {mime: base64}. */
export type Attachments = Record<string, unknown>;

const SVG_NS = 'http://www.w3.org/2000/svg';

/** Images the page shows inline; an image of any other type is left out. */
const IMAGE_MIMES = ['image/png', 'image/jpeg', 'image/gif', 'image/webp', 'image/svg+xml'];

/** The prefix of every id in content (DOMPurify's `SANITIZE_NAMED_PROPS` gives it to the rest). */
const HEADING_ID_PREFIX = 'user-content-';

const PROFILE: Config & { RETURN_DOM_FRAGMENT: true } = {
  USE_PROFILES: { html: true, svg: true, mathMl: true },
  FORBID_TAGS: [
    // CSS of its own: the exfiltration this profile exists for.
    'style',
    // Input: a notebook may not ask for anything (a fake "paste your token" form).
    'form', 'input', 'button', 'select', 'option', 'optgroup', 'textarea', 'datalist', 'dialog',
    // Loads from a URL: media, and SVG's <image>.
    'audio', 'video', 'source', 'track', 'picture', 'image',
  ],
  FORBID_ATTR: ['style', 'srcset', 'sizes', 'ping', 'background', 'poster', 'action', 'formaction'],
  ALLOW_DATA_ATTR: false,
  // `attachment:` on top of DOMPurify's default schemes; images are checked again below.
  ALLOWED_URI_REGEXP: /^(?:(?:https?|mailto|tel|attachment):|[^a-z]|[a-z+.-]+(?:[^a-z+.\-:]|$))/i,
  // ids and names get a `user-content-` prefix: content cannot clobber the page's globals or ids.
  SANITIZE_NAMED_PROPS: true,
  // An inert document's fragment: nothing in it loads until it is placed in the page, after the
  // image sources are settled below.
  RETURN_DOM_FRAGMENT: true,
};

const purifier = DOMPurify(window);

purifier.addHook('uponSanitizeAttribute', (node, data) => {
  const name = data.attrName;
  if (name === 'class') {
    // marked's `language-python` on code blocks; never one of the page's own classes.
    const kept = data.attrValue.split(/\s+/).filter((c) => /^language-[\w-]+$/.test(c));
    data.attrValue = kept.join(' ');
    data.keepAttr = kept.length > 0;
  } else if ((name === 'href' || name === 'xlink:href') && !['a', 'area'].includes(node.nodeName.toLowerCase())) {
    // Only links point anywhere (SVG's gradients, patterns and the like would reach out).
    data.keepAttr = false;
  } else if (node.namespaceURI === SVG_NS && /url\s*\(|\\/i.test(data.attrValue)) {
    // SVG presentation attributes are CSS (fill, filter, mask, cursor…): no url(), no escapes.
    data.keepAttr = false;
  }
});

purifier.addHook('afterSanitizeAttributes', (node) => {
  if (node.nodeName.toLowerCase() === 'a' || node.nodeName.toLowerCase() === 'area') {
    const href = node.getAttribute('href');
    if (href?.startsWith('#')) {
      // A link within the notebook (`[see](#Results)`, as JupyterLab names headings) goes to the
      // heading's id, which carries the prefix every id of content has; in this tab.
      node.setAttribute('href', `#${HEADING_ID_PREFIX}${href.slice(1)}`);
      node.removeAttribute('target');
    } else if (href || node.getAttribute('xlink:href')) {
      node.setAttribute('target', '_blank');
      node.setAttribute('rel', 'noopener noreferrer');
    } else {
      node.removeAttribute('target');
    }
  }
});

/** The `data:` URL of attachment `name`, if it is an image. */
function attachmentUrl(attachments: Attachments | undefined, name: string): string | null {
  const bundle = attachments?.[name];
  if (!bundle || typeof bundle !== 'object') return null;
  for (const mime of IMAGE_MIMES) {
    const value = (bundle as Record<string, unknown>)[mime];
    const text = Array.isArray(value) ? value.join('') : value;
    if (typeof text !== 'string') continue;
    return mime === 'image/svg+xml'
      ? `data:${mime};charset=utf-8,${encodeURIComponent(text)}`
      : `data:${mime};base64,${text.replace(/\s/g, '')}`;
  }
  return null;
}

/**
 * Images show what the document carries (data: URLs, attachments) and nothing from elsewhere:
 * an image on another server becomes a link to it, so the page requests nothing by itself.
 */
function settleImages(fragment: DocumentFragment, attachments: Attachments | undefined) {
  for (const img of fragment.querySelectorAll('img')) {
    const src = img.getAttribute('src') ?? '';
    if (/^data:image\//i.test(src)) continue;
    const attached = src.toLowerCase().startsWith('attachment:') ? attachmentUrl(attachments, decodeURIComponent(src.slice(11))) : null;
    if (attached) {
      img.setAttribute('src', attached);
      continue;
    }
    const link = img.ownerDocument.createElement('a');
    link.className = 'external-image';
    link.textContent = `[image: ${img.getAttribute('alt') || src || 'not shown'}]`;
    link.title = 'Images from other servers are not loaded: they would tell that server who reads this notebook';
    if (/^https?:/i.test(src)) {
      link.setAttribute('href', src);
      link.setAttribute('target', '_blank');
      link.setAttribute('rel', 'noopener noreferrer');
    }
    img.replaceWith(link);
  }
}

/**
 * Headings get ids as JupyterLab makes them (their text, spaces as `-`) behind the content
 * prefix, and a `¶` link to themselves, shown on hover.
 */
function anchorHeadings(fragment: DocumentFragment, math: string[]) {
  for (const heading of fragment.querySelectorAll('h1, h2, h3, h4, h5, h6')) {
    const id = HEADING_ID_PREFIX + withMathSource(heading.textContent ?? '', math).replace(/ /g, '-');
    heading.id = id;
    const anchor = heading.ownerDocument.createElement('a');
    anchor.className = 'heading-anchor';
    anchor.setAttribute('href', `#${id}`);
    anchor.setAttribute('aria-label', 'Link to this heading');
    // The `¶` is the stylesheet's (::after): the heading's text stays its own.
    heading.append(anchor);
  }
}

/** Markdown as sanitised nodes to put in the page (attachments resolve `attachment:` images). */
export function renderMarkdown(source: string, attachments?: Attachments): DocumentFragment {
  const { text, math } = extractMath(source);
  const html = marked.parse(text, { async: false, gfm: true, breaks: false }) as string;
  const fragment = purifier.sanitize(html, PROFILE);
  settleImages(fragment, attachments);
  anchorHeadings(fragment, math);
  restoreMath(fragment, math);
  highlightCodeBlocks(fragment);
  return fragment;
}
