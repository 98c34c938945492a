/* Phoenyra EMS – small helpers every page script uses (loaded first by base.tpl). */
(function () {
  'use strict';

  function byId(id) { return document.getElementById(id); }

  function isNum(v) { return typeof v === 'number' && isFinite(v); }

  /** Safe nested property access: get(obj, 'a', 'b', 'c'); undefined on any missing level. */
  function get(obj) {
    var cur = obj;
    for (var i = 1; i < arguments.length; i++) {
      if (cur === null || cur === undefined || typeof cur !== 'object') return undefined;
      cur = cur[arguments[i]];
    }
    return cur;
  }

  window.EMSUtil = Object.freeze({ $: byId, isNum: isNum, get: get });
})();
