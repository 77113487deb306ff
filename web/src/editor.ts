// A cell's CodeMirror 6 editor, bound to the engine's text through deltas in both directions,
// with collaborators' cursors and selections drawn from presence.

import { closeBrackets, closeBracketsKeymap } from '@codemirror/autocomplete';
import { defaultKeymap, indentLess, indentMore } from '@codemirror/commands';
import { python } from '@codemirror/lang-python';
import {
  bracketMatching,
  defaultHighlightStyle,
  indentOnInput,
  indentUnit,
  syntaxHighlighting,
} from '@codemirror/language';
import {
  Annotation,
  ChangeSet,
  Compartment,
  EditorSelection,
  EditorState,
  Prec,
  StateEffect,
  StateField,
  Transaction,
  type ChangeSpec,
  type Extension,
  type Range,
} from '@codemirror/state';
import {
  Decoration,
  type DecorationSet,
  EditorView,
  WidgetType,
  drawSelection,
  highlightSpecialChars,
  keymap,
  placeholder,
} from '@codemirror/view';
import type { TextDelta } from '/engine/inloop_wasm.js';
import { styleNonce } from './common';

/** Marks transactions that come from the document (peers, undo): not sent back. */
export const fromDocument = Annotation.define<boolean>();

export type EditorCommand =
  | 'run-next' // Shift+Enter
  | 'run' // Ctrl/Cmd+Enter
  | 'run-insert' // Alt+Enter
  | 'escape'
  | 'undo'
  | 'redo'
  | 'up-out' // ArrowUp on the first line
  | 'down-out'; // ArrowDown on the last line

export interface EditorHooks {
  /** A local change, as a delta against the text before it. */
  change(delta: TextDelta[]): void;
  /** The selection moved (or the editor gained or lost focus). */
  selection(anchor: number, head: number, focused: boolean): void;
  focus(): void;
  blur(): void;
  command(name: EditorCommand): boolean;
}

/** A peer's caret and selection in this cell. */
export interface RemoteCaret {
  clientId: number;
  name: string;
  /** A CSS colour the page checked (presence is any peer's input). */
  colour: string;
  anchor: number;
  head: number;
}

const setCarets = StateEffect.define<RemoteCaret[]>();

class CaretWidget extends WidgetType {
  constructor(
    readonly name: string,
    readonly colour: string,
  ) {
    super();
  }
  eq(other: CaretWidget) {
    return other.name === this.name && other.colour === this.colour;
  }
  toDOM() {
    const caret = document.createElement('span');
    caret.className = 'cm-remote-cursor';
    caret.style.borderLeftColor = this.colour;
    const label = document.createElement('span');
    label.className = 'cm-remote-cursor-label';
    label.textContent = this.name;
    label.style.backgroundColor = this.colour;
    caret.append(label);
    return caret;
  }
  ignoreEvent() {
    return true;
  }
}

function caretDecorations(carets: RemoteCaret[], length: number): DecorationSet {
  const ranges: Range<Decoration>[] = [];
  for (const c of carets) {
    const anchor = Math.max(0, Math.min(c.anchor, length));
    const head = Math.max(0, Math.min(c.head, length));
    const from = Math.min(anchor, head);
    const to = Math.max(anchor, head);
    if (to > from) {
      ranges.push(
        Decoration.mark({
          class: 'cm-remote-selection',
          // (CodeMirror sets `style` through the CSSOM, which the page's policy allows.)
          attributes: { style: `background-color: color-mix(in srgb, ${c.colour} 20%, transparent)`, 'data-peer': c.name },
        }).range(from, to),
      );
    }
    ranges.push(Decoration.widget({ widget: new CaretWidget(c.name, c.colour), side: 1 }).range(head));
  }
  return Decoration.set(ranges, true);
}

const caretField = StateField.define<DecorationSet>({
  create: () => Decoration.none,
  update(value, tr) {
    value = value.map(tr.changes);
    for (const effect of tr.effects) {
      if (effect.is(setCarets)) value = caretDecorations(effect.value, tr.state.doc.length);
    }
    return value;
  },
  provide: (f) => EditorView.decorations.from(f),
});

/** The delta of a CodeMirror change set (UTF-16 offsets, as the engine counts). */
export function changesToDelta(changes: ChangeSet): TextDelta[] {
  const delta: TextDelta[] = [];
  let pos = 0;
  changes.iterChanges((fromA, toA, _fromB, _toB, inserted) => {
    if (fromA > pos) delta.push({ retain: fromA - pos });
    if (toA > fromA) delta.push({ delete: toA - fromA });
    const text = inserted.toString();
    if (text) delta.push({ insert: text });
    pos = toA;
  });
  return delta;
}

/** The one span where `text` differs from `old` (common start and end kept); null if equal. */
function changedSpan(old: string, text: string): { from: number; to: number; insert: string } | null {
  if (old === text) return null;
  let start = 0;
  while (start < old.length && start < text.length && old[start] === text[start]) start++;
  let endOld = old.length;
  let endNew = text.length;
  while (endOld > start && endNew > start && old[endOld - 1] === text[endNew - 1]) {
    endOld--;
    endNew--;
  }
  return { from: start, to: endOld, insert: text.slice(start, endNew) };
}

/** The CodeMirror changes of a delta; null if it does not fit a text of `length`. */
export function deltaToChanges(delta: TextDelta[], length: number): ChangeSpec[] | null {
  const changes: ChangeSpec[] = [];
  let pos = 0;
  for (const op of delta) {
    if ('retain' in op) pos += op.retain;
    else if ('insert' in op) changes.push({ from: pos, insert: op.insert });
    else if ('delete' in op) {
      changes.push({ from: pos, to: pos + op.delete });
      pos += op.delete;
    }
    if (pos > length) return null;
  }
  return changes;
}

/**
 * CodeMirror puts its styles in a `<style>` element of the page, which the page's
 * Content-Security-Policy lets through only with the nonce the relay gave this page.
 */
const cspNonce = EditorView.cspNonce.of(styleNonce());

const theme = EditorView.theme({
  '&': { fontSize: '13.5px', backgroundColor: 'transparent' },
  '.cm-content': { fontFamily: 'var(--mono)', padding: '6px 0', caretColor: 'var(--fg)' },
  '.cm-line': { padding: '0 8px' },
  '&.cm-focused': { outline: 'none' },
  '.cm-scroller': { fontFamily: 'var(--mono)', lineHeight: '1.45' },
});

export interface EditorOptions {
  doc: string;
  language: 'python' | 'markdown' | 'raw';
  readOnly: boolean;
  hooks: EditorHooks;
}

/** How many of its own latest changes an editor remembers (see `CellEditor.lostChanges`). */
const LOCAL_CHANGES_KEPT = 1000;

/** A cell editor: CodeMirror with no history of its own (the engine's undo is the one history). */
export class CellEditor {
  readonly view: EditorView;
  private readonly language = new Compartment();
  private readonly readOnly = new Compartment();
  private caretsKey = '';
  /**
   * This editor's own changes since the last one that came from the document, each with its
   * inverse: what a copy of the cell made while they were on their way may lack.
   */
  private local: { changes: ChangeSet; inverse: ChangeSet }[] = [];

  constructor(parent: HTMLElement, options: EditorOptions) {
    const hooks = options.hooks;
    const run = (name: EditorCommand) => () => hooks.command(name);
    const cellKeys = Prec.highest(
      keymap.of([
        { key: 'Shift-Enter', run: run('run-next') },
        { key: 'Mod-Enter', run: run('run') },
        { key: 'Alt-Enter', run: run('run-insert') },
        { key: 'Escape', run: run('escape') },
        {
          // Ctrl/Cmd+Z undoes, with Shift redoes, whatever case the key reports.
          any: (_view, event) => {
            if (!(event.ctrlKey || event.metaKey) || event.altKey) return false;
            const key = event.key.toLowerCase();
            if (key === 'z') {
              event.preventDefault();
              return hooks.command(event.shiftKey ? 'redo' : 'undo');
            }
            if (key === 'y' && !event.shiftKey) {
              event.preventDefault();
              return hooks.command('redo');
            }
            return false;
          },
        },
        {
          key: 'ArrowUp',
          run: (view) => {
            const sel = view.state.selection.main;
            if (!sel.empty || view.state.doc.lineAt(sel.head).number !== 1) return false;
            return hooks.command('up-out');
          },
        },
        {
          key: 'ArrowDown',
          run: (view) => {
            const sel = view.state.selection.main;
            const doc = view.state.doc;
            if (!sel.empty || doc.lineAt(sel.head).number !== doc.lines) return false;
            return hooks.command('down-out');
          },
        },
        { key: 'Tab', run: (v) => (v.state.selection.ranges.some((r) => !r.empty) ? indentMore(v) : (v.dispatch(v.state.replaceSelection('    ')), true)) },
        { key: 'Shift-Tab', run: indentLess },
      ]),
    );
    const extensions: Extension[] = [
      cellKeys,
      EditorState.lineSeparator.of('\n'),
      indentUnit.of('    '),
      EditorState.tabSize.of(4),
      highlightSpecialChars(),
      drawSelection(),
      indentOnInput(),
      bracketMatching(),
      closeBrackets(),
      syntaxHighlighting(defaultHighlightStyle, { fallback: true }),
      keymap.of([...closeBracketsKeymap, ...defaultKeymap]),
      EditorView.lineWrapping,
      cspNonce,
      theme,
      caretField,
      this.language.of(languageOf(options.language)),
      this.readOnly.of(readOnlyOf(options.readOnly)),
      placeholder(options.language === 'markdown' ? 'Markdown text' : ''),
      EditorView.updateListener.of((update) => {
        for (const tr of update.transactions) {
          if (!tr.docChanged) continue;
          if (tr.annotation(fromDocument)) {
            // Earlier local changes no longer line up with the text: forget them.
            this.local = [];
            continue;
          }
          this.local.push({ changes: tr.changes, inverse: tr.changes.invert(tr.startState.doc) });
          if (this.local.length > LOCAL_CHANGES_KEPT) this.local.shift();
          hooks.change(changesToDelta(tr.changes));
        }
        if (update.selectionSet || update.focusChanged) {
          const main = update.state.selection.main;
          hooks.selection(main.anchor, main.head, update.view.hasFocus);
        }
      }),
      EditorView.domEventHandlers({
        focus: () => {
          hooks.focus();
          return false;
        },
        blur: () => {
          hooks.blur();
          return false;
        },
      }),
    ];
    this.view = new EditorView({
      parent,
      state: EditorState.create({ doc: options.doc, extensions }),
    });
  }

  get text(): string {
    return this.view.state.doc.toString();
  }

  /**
   * Applies a change that is already in the document (a peer's, an undo): selection and
   * carets are mapped through it. Returns false when the delta does not fit (the caller then
   * resets the text).
   */
  applyDelta(delta: TextDelta[]): boolean {
    const changes = deltaToChanges(delta, this.view.state.doc.length);
    if (!changes) return false;
    this.view.dispatch({
      changes,
      annotations: [fromDocument.of(true), Transaction.addToHistory.of(false)],
    });
    return true;
  }

  /**
   * Makes the text equal to `text`, replacing only the span that differs: the selection is
   * mapped through that change, so a caret outside it keeps its place in the text.
   */
  setText(text: string) {
    const span = changedSpan(this.text, text);
    if (!span) return;
    this.view.dispatch({
      changes: span,
      annotations: [fromDocument.of(true), Transaction.addToHistory.of(false)],
    });
  }

  /**
   * The document's text of this cell is now `text`, a copy (the cell moved the way Yjs moves:
   * a new map; or came back after a delete). A copy made while this editor's latest changes were
   * on their way lacks them: if `text` is this editor's text without its last N changes, returns
   * those N changes as one delta against `text` (empty if nothing is missing), to send again.
   * Otherwise null: the copy differs in some other way.
   */
  lostChanges(text: string): TextDelta[] | null {
    let doc = this.view.state.doc;
    if (doc.length === text.length && doc.toString() === text) return [];
    for (let n = this.local.length - 1; n >= 0; n--) {
      doc = this.local[n].inverse.apply(doc);
      if (doc.length !== text.length || doc.toString() !== text) continue;
      let lost = this.local[n].changes;
      for (const later of this.local.slice(n + 1)) lost = lost.compose(later.changes);
      return changesToDelta(lost);
    }
    return null;
  }

  /** The delta that makes `text` (the document's) equal to this editor's text. */
  deltaFrom(text: string): TextDelta[] {
    const span = changedSpan(text, this.text);
    return span ? changesToDelta(ChangeSet.of(span, text.length)) : [];
  }

  get selection(): { anchor: number; head: number } {
    const { anchor, head } = this.view.state.selection.main;
    return { anchor, head };
  }

  setCarets(carets: RemoteCaret[]) {
    const key = JSON.stringify(carets);
    if (key === this.caretsKey) return;
    this.caretsKey = key;
    this.view.dispatch({ effects: setCarets.of(carets) });
  }

  setLanguage(language: 'python' | 'markdown' | 'raw') {
    this.view.dispatch({ effects: this.language.reconfigure(languageOf(language)) });
  }

  setReadOnly(readOnly: boolean) {
    this.view.dispatch({ effects: this.readOnly.reconfigure(readOnlyOf(readOnly)) });
  }

  /** Focuses the editor, with the caret at the start, the end, or a selection (clamped). */
  focus(at?: 'start' | 'end' | { anchor: number; head: number }) {
    if (at) {
      const length = this.view.state.doc.length;
      const clamp = (pos: number) => Math.max(0, Math.min(pos, length));
      const selection =
        typeof at === 'object'
          ? EditorSelection.single(clamp(at.anchor), clamp(at.head))
          : EditorSelection.cursor(at === 'start' ? 0 : length);
      this.view.dispatch({ selection, scrollIntoView: true });
    }
    this.view.focus();
  }

  destroy() {
    this.view.destroy();
  }
}

function languageOf(language: 'python' | 'markdown' | 'raw'): Extension {
  return language === 'python' ? python() : [];
}

function readOnlyOf(readOnly: boolean): Extension {
  // Still focusable and selectable (copy, keys); typing changes nothing.
  return EditorState.readOnly.of(readOnly);
}
