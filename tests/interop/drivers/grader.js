// A scripted promptfoo grader for the interop tests: no model, no network.
// It logs every grading prompt (one JSON string a line) to $ICAI_GRADER_LOG and passes the rubric,
// so a test can check what promptfoo sent the grader and that the assertion was evaluated.
const fs = require('fs');

class ScriptedGrader {
  id() {
    return 'icai-scripted-grader';
  }

  async callApi(prompt) {
    if (process.env.ICAI_GRADER_LOG) {
      fs.appendFileSync(process.env.ICAI_GRADER_LOG, JSON.stringify(prompt) + '\n');
    }
    return { output: JSON.stringify({ reason: 'scripted test grader', pass: true, score: 1 }) };
  }
}

module.exports = ScriptedGrader;
